# One image for web, worker and beat; build with EXTRAS=ml for a GPU worker.
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 EDITLOOP_VAR_DIR=/var/lib/editloop
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY accounts accounts
COPY jobs jobs
COPY annotation annotation
COPY benchmark benchmark
COPY rewardmodel rewardmodel
COPY rltraining rltraining
COPY media media
COPY editworld editworld
COPY demo demo
COPY lineage lineage
COPY hooks hooks
COPY mlcore mlcore
COPY templates templates
COPY static static
COPY manage.py ./
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && pip install --no-cache-dir --no-deps editscore==0.2 qwen-vl-utils==0.0.14 \
 && DEBUG=1 SECRET_KEY=build-only-build-only-build-only-xx python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
