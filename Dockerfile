# modelsplit container image.
#
#   docker build -t modelsplit .
#   docker run --rm -p 8080:8080 -p 9464:9464 --stop-timeout 15 \
#     -v "$PWD/modelsplit-config:/etc/modelsplit:ro" modelsplit
#
# The router reads /etc/modelsplit/router.yaml. The file baked in here is only the example
# from config/ (it listens on 127.0.0.1, so nothing outside the container can reach it): mount
# a directory of your own over /etc/modelsplit whose router.yaml sets
# `listen: { host: 0.0.0.0 }` and `admin: { host: 0.0.0.0, token_file: ... }` (or
# `insecure: true`: off loopback the admin API wants a token). Mount the directory, not the
# file: the router watches the directory to hot-reload edits, and a single-file bind mount
# keeps the old file when an editor saves by rename.

# Node.js 26 is the Active LTS line (since 2026-10-28). Pinned by major: rebuild to pick up
# patch and security releases. Override with --build-arg NODE_IMAGE=... if needed.
ARG NODE_IMAGE=node:26-bookworm-slim

# ---- build: install every dependency and compile TypeScript to dist/ -----------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first so this layer is cached until package*.json change. --ignore-scripts
# skips `prepare` (the build), which needs src/ and runs explicitly below; no dependency has
# an install script.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, compiled output, nothing else ----------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# --ignore-scripts: `prepare` would run tsc, which is a devDependency and is not installed here.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# Placeholder config so the image starts on its own; mount your own over /etc/modelsplit.
COPY config/router.yaml /etc/modelsplit/router.yaml

# Records (recording.path) belong on a volume; this directory is the one the README's config uses.
RUN mkdir -p /var/lib/modelsplit && chown node:node /var/lib/modelsplit
VOLUME ["/var/lib/modelsplit"]

# The application files stay root-owned and read-only to the process; it runs as the
# official image's unprivileged `node` user (uid/gid 1000).
USER node

# 8080: predictions (`listen`). 9464: /metrics, /healthz, /readyz, /admin/* (`admin`).
EXPOSE 8080 9464

# No curl or wget in slim images: probe with Node's own fetch. 127.0.0.1 reaches the admin
# server whether it binds 127.0.0.1 or 0.0.0.0; set MODELSPLIT_HEALTHCHECK_URL (docker run -e)
# if your config moves the admin port.
ENV MODELSPLIT_HEALTHCHECK_URL=http://127.0.0.1:9464/healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.MODELSPLIT_HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node runs as PID 1 with no init: the CLI installs its own SIGTERM/SIGINT handlers (a PID 1
# without handlers would ignore them), drains in-flight requests for up to
# shutdown_timeout_ms (10 s by default), then exits; SIGHUP reloads the config. It starts no
# child processes, so there are no zombies to reap. Give `docker stop` / `--stop-timeout` a
# little more than shutdown_timeout_ms, or Docker's 10 s default SIGKILLs a long drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve", "--config", "/etc/modelsplit/router.yaml"]
