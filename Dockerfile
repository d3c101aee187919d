# The production image: web (uvicorn), worker and beat share it; docker-compose.yml wires them.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# CPU torch by default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 for CUDA.
ARG TORCH_PIN=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "$TORCH_PIN" --index-url "$TORCH_INDEX"
COPY pyproject.toml README.md ./
COPY webapp webapp
COPY generation generation
COPY training training
COPY kernels kernels
COPY bench bench
COPY templates templates
COPY static static
COPY manage.py ./
RUN pip install . && mkdir -p /app/var
ENV ZHUFU_VAR_DIR=/app/var
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput && uvicorn webapp.asgi:application --host 0.0.0.0 --port 8000 --workers 2"]
