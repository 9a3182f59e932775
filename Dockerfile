# One image for the three services: `replaypipe ingest|masker|sink|migrate`.
# Build:  docker build -t replaypipe:$(git rev-parse --short HEAD) .
# Stage 1 has the compilers (for any dependency without a wheel); stage 2 gets
# only the finished virtualenv, so no build tool reaches production. The
# development tooling (services/dev: local broker, generator, `replaypipe run`)
# is kept out by .dockerignore.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/replaypipe
WORKDIR /src
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md* ./
RUN mkdir -p services && touch services/__init__.py \
 && /opt/replaypipe/bin/pip install . \
 && /opt/replaypipe/bin/pip uninstall -y replaypipe
COPY services ./services
RUN /opt/replaypipe/bin/pip install --no-deps . \
 && /opt/replaypipe/bin/python -m compileall -q /opt/replaypipe \
 && /opt/replaypipe/bin/pip uninstall -y pip setuptools wheel

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid/gid so the pods' runAsUser/runAsNonRoot can check it.
RUN groupadd --gid 10001 replaypipe \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin replaypipe
COPY --from=build /opt/replaypipe /opt/replaypipe
COPY config/sites.json /etc/replaypipe/sites.json
ENV PATH=/opt/replaypipe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SITES_FILE=/etc/replaypipe/sites.json \
    MASKER_STATE_DIR=/var/lib/replaypipe/masker
USER 10001:10001
EXPOSE 8080 8081 8082
ENTRYPOINT ["replaypipe"]
CMD ["ingest"]
