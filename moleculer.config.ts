/**
 * Broker configuration, driven by the environment (see lib/config.ts and the README).
 * Unset: one process, in-memory cacher, no transporter. TRANSPORTER=TCP or nats://...: a cluster.
 */
import { type BrokerOptions, type ServiceBroker } from "moleculer";
import { SHOP_SERVICES, checkServiceDir, readConfig, type ShopConfig } from "./lib/config";
import { HealthProbeMiddleware } from "./mixins/health-probe.middleware";
import { EventLoopMetricsMiddleware } from "./mixins/event-loop-metrics.middleware";
import { brokerMiddlewares } from "./mixins/lean-metrics.middleware";
import { RetryBoundaryMiddleware } from "./mixins/retry-boundary.middleware";
import { TimedOutCallsMiddleware } from "./mixins/timed-out-calls.middleware";
import { NullFieldsMiddleware } from "./mixins/null-fields.middleware";
import { StopNoticeMiddleware } from "./mixins/stop-notice.middleware";
import { NodeAwayMiddleware } from "./mixins/node-away.middleware";
import { NodeRestartMiddleware } from "./mixins/node-restart.middleware";
import { safeParamTags } from "./lib/trace-tags";
import { breaksCircuit } from "./lib/errors";
import { retryPolicyCheck } from "./mixins/retry-policy";
import { VALIDATOR_MESSAGES } from "./lib/param-rules";
import { LazyFastestValidator } from "./mixins/lazy-validator";
import "./mixins/prometheus-reporter";
import { ThrottledWarningsMiddleware } from "./mixins/throttled-warnings.middleware";
import { ShopRedisCacher } from "./adapters/redis-cacher";
import { redisClientOptions } from "./adapters/redis-connection";
import { setOpsLogger } from "./lib/ops-log";


function cacherOptions(cfg: ShopConfig): BrokerOptions["cacher"] {
	const redis = cfg.cacher && cfg.cacher !== "Memory" ? cfg.cacher : cfg.redisUrl;
	if (redis && cfg.cacher !== "Memory") {
		// Fail fast while Redis is down (adapters/redis-connection.ts): a cached call is a 503 within a second, not a wait of tens.
		return new ShopRedisCacher({ prefix: `${cfg.namespace || "shop"}-cache`, ttl: 300, redis: redisClientOptions(redis) as any });
	}
	// LRU-bounded so a large catalog cannot grow the cache without limit.
	return { type: "MemoryLRU", options: { max: 10_000, ttl: 300 } };
}

function tracingOptions(cfg: ShopConfig): BrokerOptions["tracing"] {
	if (!cfg.tracing) return { enabled: false };
	const exporter: any[] = [];
	for (const kind of cfg.tracing.split(",").map((s) => s.trim().toLowerCase())) {
		if (kind === "console") exporter.push({ type: "Console", options: { width: 100, colors: true } });
		// Jaeger ingests the Zipkin format too (its collector's Zipkin port), so one exporter serves both.
		if (kind === "zipkin" || kind === "jaeger") exporter.push({ type: "Zipkin", options: { baseURL: cfg.zipkinUrl } });
		if (kind === "event") exporter.push({ type: "Event", options: { eventName: "$tracing.spans", sendStartSpan: false, sendFinishSpan: true, broadcast: true } });
	}
	// Spans leave the process: their params never carry passwords, tokens or keys (lib/trace-tags.ts).
	return { enabled: true, sampling: { rate: 1 }, exporter, events: true, tags: { action: safeParamTags as any, event: safeParamTags as any } };
}

export function buildBrokerConfig(env: NodeJS.ProcessEnv = process.env): BrokerOptions {
	const cfg = readConfig(env);
	checkServiceDir(env.SERVICEDIR);
	const retry = retryPolicyCheck();
	return {
		namespace: cfg.namespace,
		nodeID: cfg.nodeID,
		metadata: { services: SHOP_SERVICES },
		// LOG_FORMAT: "full" by default, each line with its date and node id (a cluster's logs are read together).
		logger: {
			type: "Console",
			options: { level: cfg.logLevel, colors: cfg.logFormat !== "json" && process.stdout.isTTY, moduleColors: false, formatter: cfg.logFormat, autoPadding: false },
		},
		logLevel: cfg.logLevel as any,
		// The store layer's reports (failed writes, repaired files, the lock) then read like every other line.
		created: (broker) => setOpsLogger(broker.getLogger("STORE")),
		transporter: (cfg.transporter ?? null) as BrokerOptions["transporter"],
		cacher: cacherOptions(cfg),
		serializer: "JSON",
		requestTimeout: cfg.requestTimeout,
		// Retry only what the broker marks retryable (node gone, 503), a timeout only of an action that may
		// run twice at once, nothing while cut off (mixins/retry-policy.ts): business errors never repeat.
		retryPolicy: {
			enabled: true,
			retries: 3,
			delay: 100,
			maxDelay: 1000,
			factor: 2,
			check: retry.check,
		},
		maxCallLevel: 100,
		heartbeatInterval: cfg.heartbeatInterval,
		heartbeatTimeout: cfg.heartbeatTimeout,
		contextParamsCloning: false,
		// In-flight requests finish before a node stops (SIGTERM → graceful shutdown).
		tracking: { enabled: true, shutdownTimeout: cfg.shutdownTimeout },
		disableBalancer: false,
		registry: { strategy: "RoundRobin", preferLocal: true },
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 60,
			halfOpenTime: 10_000,
			// Only failures of the service itself count (lib/errors.ts breaksCircuit).
			check: breaksCircuit,
		},
		bulkhead: { enabled: true, concurrency: 100, maxQueueSize: 2000 },
		// fastest-validator, as `true` gives, with the shop's messages (lib/param-rules.ts), each schema compiled on first use.
		validator: new LazyFastestValidator({ messages: VALIDATOR_MESSAGES }),
		errorHandler: null as any,
		metrics: {
			enabled: cfg.metricsEnabled,
			// No in-process quantiles: Prometheus computes them from the buckets (histogram_quantile, as
			// the dashboards and alerts do). Moleculer's own would keep every sample of the last minute
			// for each histogram and cost time on every request.
			defaultQuantiles: null as any,
			reporter: [
				{
					// Moleculer's Prometheus reporter, with each histogram's _sum and _count (mixins/prometheus-reporter.ts).
					type: "ShopPrometheus" as "Prometheus",
					options: {
						port: cfg.metricsPort,
						host: cfg.metricsHost,
						path: "/metrics",
						defaultLabels: (registry: any) => ({ namespace: registry.broker.namespace, nodeID: registry.broker.nodeID }),
						// Who runs the process and where is nobody's business who can read the metrics.
						excludes: ["os.user.*", "os.network.*", "os.hostname", "process.arguments"],
					},
				},
			],
		},
		tracing: tracingOptions(cfg),
		// Moleculer's internal middlewares are listed by brokerMiddlewares, with lean request and event metrics.
		internalMiddlewares: false,
		// moleculer-runner without SERVICEDIR, SERVICES or file arguments loads nothing and says nothing. Not refused:
		// a REPL may join a cluster as a node of its own.
		started(broker: ServiceBroker) {
			if (broker.registry.getServiceList({ onlyLocal: true, skipInternal: true }).length) return;
			broker.logger.warn("This node hosts no service: set SERVICEDIR=dist/services (npm start does) and SERVICES to name what it hosts, as moleculer-runner reads them.");
		},
		middlewares: brokerMiddlewares([RetryBoundaryMiddleware(), TimedOutCallsMiddleware(), NodeAwayMiddleware(cfg.serviceWaitMs), NodeRestartMiddleware(), NullFieldsMiddleware(), HealthProbeMiddleware(cfg.healthPort), EventLoopMetricsMiddleware(), StopNoticeMiddleware(), ThrottledWarningsMiddleware(), retry.middleware]) as BrokerOptions["middlewares"],
		replOptions: {
			customCommands: [
				{
					command: "shop",
					description: "Shop status: every shop service, the nodes hosting it and its health answer",
					async action(broker: ServiceBroker) {
						const list = broker.registry.getServiceList({ skipInternal: true, withActions: false }) as any[];
						for (const name of SHOP_SERVICES) {
							const nodes = list.filter((s) => s.name === name).map((s) => s.nodeID);
							let health = "unreachable";
							if (nodes.length) {
								try {
									health = JSON.stringify(await broker.call(`${name}.health`, {}, { timeout: 3000 }));
								} catch (err) {
									health = `error: ${(err as Error).message}`;
								}
							}
							console.log(`${name.padEnd(14)} nodes=${(nodes.join(",") || "-").padEnd(30)} ${health}`);
						}
					},
				},
				{
					command: "stock <variantId>",
					description: "Current stock and the last inventory changes of a variant (an id starting with \"-\", made before ids stopped starting so: stock -- <id>)",
					async action(broker: ServiceBroker, args: { variantId: string }) {
						try {
							console.log(await broker.call("products.checkStock", { items: [{ variantId: args.variantId, quantity: 1 }] }));
							console.log(await broker.call("products.inventoryHistory", { variantId: args.variantId, pageSize: 10 }));
						} catch (err) {
							console.log(`error: ${(err as Error).message}`);
						}
					},
				},
			],
		} as any,
	};
}

/**
 * moleculer-runner then overwrites every option whose name matches a set environment variable with
 * that variable's raw value (CACHER → cacher, METRICS_ENABLED → metrics.enabled): METRICS_ENABLED=off
 * would turn metrics on, and CACHER=Memory would replace the bounded, expiring cache built above with
 * an unbounded one. What readConfig made of them is what counts, so the runner is handed that:
 * the boolean as it reads booleans, and no CACHER at all, since the cacher option is built from it.
 * LOGLEVEL is handed over in lower case, as read. (TRANSPORTER, NAMESPACE and NODEID are taken raw both ways.)
 */
export function handRunnerTheReadValues(env: NodeJS.ProcessEnv, cfg: ShopConfig): void {
	if (env.METRICS_ENABLED) env.METRICS_ENABLED = String(cfg.metricsEnabled);
	if (env.CACHER) env.CACHER = "";
	if (env.LOGLEVEL) env.LOGLEVEL = cfg.logLevel;
}

const config = buildBrokerConfig();
handRunnerTheReadValues(process.env, readConfig());
export default config;
