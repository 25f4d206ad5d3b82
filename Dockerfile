# syntax=docker/dockerfile:1
# One image for every shop node: SERVICES picks which services a container runs
# (e.g. SERVICES=api for a gateway, SERVICES=orders,payments,cart for checkout; unset = all nine).
ARG NODE_IMAGE=node:22-bookworm-slim

# --- build: full dependencies, TypeScript compiled to dist/ (with lib/data and templates) ---
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# --- deps: production dependencies only, in their own stage so dev tools never reach the image ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- runtime ---
FROM ${NODE_IMAGE} AS runtime
# In a container, loopback would hide the metrics from every scraper: the container network is the boundary.
ENV NODE_ENV=production \
    PORT=3000 \
    METRICS_PORT=3030 \
    METRICS_HOST=0.0.0.0 \
    HEALTH_PORT=3001 \
    DATA_DIR=/app/data \
    SERVICEDIR=dist/services
WORKDIR /app
# Code and dependencies stay owned by root: the app user can read them but not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The embedded store (NeDB) writes here when MONGO_URI is not set.
RUN mkdir -p /app/data && chown node:node /app/data
USER node

# 3000: REST gateway (SERVICES with api), 3030: Prometheus metrics, 3001: /live and /ready probes.
EXPOSE 3000 3030 3001

# Every node serves /ready on HEALTH_PORT; a gateway started without it still answers /api/health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const p=process.env.HEALTH_PORT;const u=p?'http://127.0.0.1:'+p+'/ready':'http://127.0.0.1:'+(process.env.PORT||3000)+'/api/health';require('http').get(u,r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]

# moleculer-runner handles SIGTERM/SIGINT itself: in-flight requests finish before the node exits.
CMD ["node", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"]
