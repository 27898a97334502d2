"""Tiny randomly initialised models with a word-level tokenizer, built and saved in a temp dir (no downloads).

`from_pretrained(path)` then loads them exactly like a real checkpoint, so the worker code under test runs
unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<unk>", "<|im_start|>", "<|im_end|>"]
# The chat template of SmolLM2 and friends (ChatML), minus the system prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = (  # noqa: SIM905 - one readable block of vocabulary
    "user assistant system the a is of and to in it that for on with as was at by be this are or from "
    "cat dog bird fish tree river sun moon star rain snow wind fire stone road house door window book "
    "red blue green yellow black white big small old new fast slow happy sad good bad yes no "
    "write tell me about say something story poem answer question please why how what when "
    "banana . , ! ?"
).split()
VOCAB = SPECIALS + WORDS
MARKER = "banana"


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # No pad token on purpose: like SmolLM2, the worker must fall back to the end-of-sequence token.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )


def save_tiny_model(kind: str, out: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    common = {"vocab_size": len(VOCAB), "bos_token_id": 1, "eos_token_id": 2}
    if kind == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=512,
                tie_word_embeddings=True,
                **common,
            )
        )
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **common))
    else:
        raise ValueError(kind)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest):
    """Tiny models gain nothing from intra-op threads, and on a busy machine spinning threads make a 2 s test
    take 30 s. The real-model (slow) tests keep torch's default."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


PLAIN_WORDS = [w for w in WORDS if w.isalpha() and w != MARKER]


def marker_rankings(n_prompts: int, k: int = 4, seed: int = 0) -> list:
    """Rankings with a clear signal: replies containing MARKER form the top tier, all others tie below."""
    import random

    from worker.data import Ranking

    rng = random.Random(seed)

    def reply(with_marker: bool) -> str:
        words = [rng.choice(PLAIN_WORDS) for _ in range(rng.randint(4, 10))]
        if with_marker:
            words.insert(rng.randrange(len(words) + 1), MARKER)
        return " ".join(words)

    rankings = []
    for _ in range(n_prompts):
        prompt = " ".join(rng.choice(PLAIN_WORDS) for _ in range(5))
        n_marker = rng.randint(1, k - 1)
        candidates = [reply(True) for _ in range(n_marker)] + [reply(False) for _ in range(k - n_marker)]
        rng.shuffle(candidates)
        top = [i for i, c in enumerate(candidates) if MARKER in c.split()]
        rest = [i for i in range(k) if i not in top]
        rankings.append(Ranking(prompt, candidates, [top, rest]))
    return rankings
