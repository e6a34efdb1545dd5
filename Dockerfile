# syntax=docker/dockerfile:1
# meshlet container image.
#   docker build -t meshlet .
#   docker run --rm -v ./mesh.yaml:/etc/meshlet/config.yaml:ro meshlet
#
# Node 24 (the current LTS line with an official uWebSockets.js binary, ABI 137) on Debian 13
# (trixie): the official uWebSockets.js builds need glibc >= 2.38, which Debian 12 does not have.

# --- build stage: full toolchain, dev dependencies, TypeScript compile -------------------------
FROM node:24-trixie AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build
# Production dependencies only, and of uWebSockets.js only the addon for this platform, arch and
# Node ABI (the package ships ~257 MB of binaries for every platform and Node ABI; linux x64 ABI 137 is 7.3 MB).
RUN npm prune --omit=dev --no-audit --no-fund \
 && keep="uws_$(node -p 'process.platform + "_" + process.arch + "_" + process.versions.modules').node" \
 && find node_modules/uWebSockets.js -name 'uws_*.node' ! -name "$keep" -delete \
 && test -f "node_modules/uWebSockets.js/$keep"

# --- runtime stage: slim Node, no compiler, no npm cache, non-root ---------------------------
FROM node:24-trixie-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Only the runtime files, owned by root and read-only for the process.
# package.json is needed at run time: it marks dist/ as ES modules ("type": "module").
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/node_modules ./node_modules
# `meshlet demo` reads this file.
COPY config-examples/demo.yaml ./config-examples/demo.yaml
COPY docker/healthcheck.mjs ./docker/healthcheck.mjs
# Mounts (nothing is baked in):
#   /etc/meshlet/config.yaml       the mesh configuration (a file; or mount a folder and pass --config /etc/meshlet)
#   /var/run/secrets/meshlet/      workload identity files cert.pem, key.pem, ca.pem (run with --identity-dir /var/run/secrets/meshlet)
# The user `node` (uid 1000) of the Node image: the process never runs as root.
USER node
# 15001: outbound listener (binds 127.0.0.1: reached by containers sharing this network namespace, the sidecar pattern)
# 15006: inbound listener (binds 0.0.0.0: the port peers and other hosts call)
# 15000: admin port (binds 127.0.0.1: /ready, /live, /metrics, /clusters, /config_dump)
EXPOSE 15001 15006 15000
# Healthy when GET http://127.0.0.1:15000/ready answers 200 (set MESHLET_ADMIN_PORT with another --admin-port).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["node", "docker/healthcheck.mjs"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["run", "--config", "/etc/meshlet/config.yaml"]
