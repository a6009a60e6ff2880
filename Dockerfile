# syntax=docker/dockerfile:1
# LabLink allocator image: PostgreSQL 15, Terraform and the allocator (dashboard + API, port 5000).
#
#   docker build -t lablink-allocator .
#   docker run -d --name lablink -p 5000:5000 \
#     -e LABLINK_APP_MODE=production -e LABLINK_APP_ADMIN_PASSWORD=... \
#     -v lablink-db:/var/lib/postgresql -v lablink-data:/var/lib/lablink lablink-allocator
#
# Secrets come from the environment at run time, never from this file. start.sh (the entry
# point) documents every setting; without LABLINK_DB_PASSWORD it generates the database
# password into /var/lib/postgresql/lablink-db-password (mode 0600, on the volume).
#
# Users: the container starts as root, on purpose and only for start.sh's first steps: it
# fixes the ownership of the volumes, runs PostgreSQL as `postgres` (runuser; PostgreSQL
# refuses root) and then runs the allocator as the unprivileged `lablink` user (setpriv).
# No long-running process of the image runs as root.
FROM python:3.12-slim-bookworm

# Terraform, from HashiCorp's release zip, checked against the SHA-256 that HashiCorp publishes
# in terraform_<version>_SHA256SUMS. A new TERRAFORM_VERSION needs its own checksums (pass
# --build-arg TERRAFORM_SHA256=...): with stale ones the build fails, as it should.
ARG TARGETARCH
ARG TERRAFORM_VERSION=1.11.4
ARG TERRAFORM_SHA256_AMD64=1ce994251c00281d6845f0f268637ba50c0005657eb3cf096b92f753b42ef4dc
ARG TERRAFORM_SHA256_ARM64=a43d1d0da9b9bab214a8305a39db0e40869572594ccf50c416a7756499143633
ARG TERRAFORM_SHA256=

SHELL ["/bin/bash", "-o", "pipefail", "-euc"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PGDATA=/var/lib/postgresql/data \
    LABLINK_APP_DATA_DIR=/var/lib/lablink \
    LABLINK_FLEET_TERRAFORM_DIR=/app/terraform/client

# PostgreSQL 15 (bookworm's), but not the cluster the package would create and start:
# start.sh makes its own in $PGDATA, configured before its first start.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/lablink.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 curl unzip ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN arch="${TARGETARCH:-amd64}" \
    && case "$arch" in \
        amd64) expected="${TERRAFORM_SHA256:-$TERRAFORM_SHA256_AMD64}" ;; \
        arm64) expected="${TERRAFORM_SHA256:-$TERRAFORM_SHA256_ARM64}" ;; \
        *) expected="${TERRAFORM_SHA256:?pass --build-arg TERRAFORM_SHA256 for $arch}" ;; \
    esac \
    && zip="terraform_${TERRAFORM_VERSION}_linux_${arch}.zip" \
    && curl -fsSL -o "/tmp/$zip" \
        "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/$zip" \
    && echo "$expected  /tmp/$zip" | sha256sum -c - \
    && unzip -q "/tmp/$zip" terraform -d /usr/local/bin \
    && rm "/tmp/$zip" \
    && terraform version

RUN useradd --system --user-group --create-home --home-dir /var/lib/lablink \
        --shell /usr/sbin/nologin lablink \
    && chmod 0750 /var/lib/lablink

WORKDIR /app
COPY . /app
RUN pip install /app \
    && chmod 0755 /app/start.sh \
    && lablink --help >/dev/null

# The database (with the generated password file) and the app's data (Terraform state of the
# VM fleets, credentials): both must outlive the container.
VOLUME ["/var/lib/postgresql", "/var/lib/lablink"]

EXPOSE 5000

# Shell form on purpose: the port comes from the container's environment at run time.
# With TLS configured the server speaks only https (its certificate names the public host,
# not 127.0.0.1: hence -k for this local probe).
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD if [ -n "${LABLINK_APP_SSL_CERTFILE:-}" ]; then scheme=https; else scheme=http; fi; \
        curl -fsSk "${scheme}://127.0.0.1:${LABLINK_APP_PORT:-5000}/api/health" >/dev/null || exit 1

# start.sh forwards SIGTERM to the server, then stops PostgreSQL (see its header).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/start.sh"]
