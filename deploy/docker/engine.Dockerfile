# The engine image worker pods run (`sail worker`): the same pinned runtime
# `kiln setup` installs (crates/kiln-compute/python/requirements-runtime.txt),
# on the same Debian Python.
#   docker build -f deploy/docker/engine.Dockerfile -t kiln-engine:latest .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY crates/kiln-compute/python/requirements-runtime.txt /opt/kiln/requirements-runtime.txt
RUN python3 -m venv /opt/kiln/runtime \
 && /opt/kiln/runtime/bin/pip install --no-cache-dir -r /opt/kiln/requirements-runtime.txt
ENV PATH=/opt/kiln/runtime/bin:$PATH
ENTRYPOINT ["sail"]
CMD ["worker"]
