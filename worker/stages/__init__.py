"""A round's stages, one module per group, in the order worker/pipeline.py runs them.

prepare (snapshot, split, parent) -> train (sft, reward, policy) -> publish (evaluate, publish) -> generate.
"""
