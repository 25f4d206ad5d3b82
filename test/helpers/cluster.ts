/**
 * Cluster harness for the infrastructure tests: shop nodes as separate Node processes (the built
 * dist/ run by moleculer-runner, as in production), joined over a real nats-server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import path from "node:path";
import fs from "node:fs";
import os from "node:os";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { freePort } from "../../bench/lib/processes";

export { freePort };

const ROOT = path.resolve(__dirname, "../..");

export function natsUrl(): string {
	const url = process.env.NATS_URL;
	if (!url) throw new Error("NATS_URL is not set: run these tests with `npm run test:infra`");
	return url;
}

export function redisUrl(): string {
	const url = process.env.REDIS_URL;
	if (!url) throw new Error("REDIS_URL is not set: run these tests with `npm run test:infra`");
	return url;
}

export interface ShopNode {
	nodeID: string;
	proc: ChildProcess;
	/** Gateway port when the node hosts `api`. */
	port?: number;
	healthPort: number;
	metricsPort: number;
	/** Its embedded store: start the node again with `env: {DATA_DIR}` to bring it back with its data. */
	dataDir: string;
	output: () => string;
	kill(signal?: NodeJS.Signals): Promise<number | null>;
	exited: Promise<number | null>;
}

export interface NodeOptions {
	nodeID: string;
	services: string[];
	namespace: string;
	env?: Record<string, string>;
}

/** Starts one node and resolves once its broker reports ready. */
export async function startNode(opts: NodeOptions): Promise<ShopNode> {
	const healthPort = await freePort();
	const metricsPort = await freePort();
	const port = opts.services.includes("api") ? await freePort() : undefined;
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `shop-${opts.nodeID}-`));
	const env = {
		...process.env,
		NODE_ENV: "production",
		NODEID: opts.nodeID,
		NAMESPACE: opts.namespace,
		TRANSPORTER: natsUrl(),
		SERVICEDIR: path.join(ROOT, "dist/services"),
		SERVICES: opts.services.join(","),
		HEALTH_PORT: String(healthPort),
		METRICS_PORT: String(metricsPort),
		PORT: String(port ?? 0),
		DATA_DIR: dataDir,
		LOGLEVEL: "warn",
		HEARTBEAT_INTERVAL: "1",
		HEARTBEAT_TIMEOUT: "4",
		REQUEST_TIMEOUT: "3000",
		JWT_SECRET: "cluster-test-secret-0123456789abcdef01234",
		SEED_DEMO: "false",
		// Buyers register by the dozen: the lowest bcrypt cost keeps that from being most of a test.
		BCRYPT_COST: "10",
		...opts.env,
	};
	const proc = spawn(process.execPath, [path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", path.join(ROOT, "dist/moleculer.config.js")], {
		env,
		cwd: ROOT,
		stdio: ["ignore", "pipe", "pipe"],
	});
	let out = "";
	proc.stdout!.on("data", (d) => (out += d));
	proc.stderr!.on("data", (d) => (out += d));
	const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
	const node: ShopNode = {
		nodeID: opts.nodeID,
		proc,
		port,
		healthPort,
		metricsPort,
		dataDir: env.DATA_DIR,
		output: () => out,
		exited,
		async kill(signal: NodeJS.Signals = "SIGTERM") {
			if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
			return exited;
		},
	};
	const deadline = Date.now() + 30_000;
	for (;;) {
		if (proc.exitCode !== null) throw new Error(`node ${opts.nodeID} exited early:\n${out}`);
		try {
			const res = await fetch(`http://127.0.0.1:${healthPort}/ready`);
			if (res.status === 200) return node;
		} catch {
			/* not listening yet */
		}
		if (Date.now() > deadline) {
			proc.kill("SIGKILL");
			throw new Error(`node ${opts.nodeID} not ready in 30 s:\n${out}`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
}

/** A broker inside the test process that joins the cluster, to call actions and watch events. */
export async function joinCluster(namespace: string, extra: Partial<BrokerOptions> = {}): Promise<ServiceBroker> {
	const broker = new ServiceBroker({
		namespace,
		nodeID: `tester-${process.pid}`,
		transporter: natsUrl() as BrokerOptions["transporter"],
		logger: false,
		heartbeatInterval: 1,
		heartbeatTimeout: 4,
		requestTimeout: 3000,
		retryPolicy: { enabled: true, retries: 5, delay: 100, maxDelay: 1000, factor: 2, check: (err: any) => !!err.retryable },
		registry: { strategy: "RoundRobin", preferLocal: false },
		...extra,
	});
	await broker.start();
	return broker;
}

/** Waits until `check` passes or the timeout runs out. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, stepMs = 100): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let lastErr: unknown;
	for (;;) {
		try {
			const v = await check();
			if (v !== false && v !== undefined && v !== null) return v;
		} catch (err) {
			lastErr = err;
		}
		if (Date.now() > deadline) throw lastErr ?? new Error("condition not met in time");
		await new Promise((r) => setTimeout(r, stepMs));
	}
}

/**
 * A stand-in for the Kubernetes Service in front of the gateways: it spreads requests over the
 * gateways in its list, one upstream connection per request. A gateway is taken out of the list
 * before it is stopped (a terminating pod leaves the endpoints), and put in once ready. As an ingress
 * does, a request whose connection was refused goes to the next gateway (it never reached one); any
 * other upstream failure is answered 502, which the tests count as a failed request.
 */
export interface ServiceProxy {
	url: string;
	add(port: number): void;
	remove(port: number): void;
	/** Requests forwarded to the gateway on `port` and not yet answered. */
	inflight(port: number): number;
	close(): Promise<void>;
}

export async function startServiceProxy(): Promise<ServiceProxy> {
	let upstreams: number[] = [];
	let next = 0;
	const open = new Map<number, number>();
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c) => chunks.push(c));
		req.on("end", () => {
			const body = Buffer.concat(chunks);
			const tried = new Set<number>();
			const forward = () => {
				const candidates = upstreams.filter((p) => !tried.has(p));
				if (!candidates.length) {
					res.writeHead(503, { "Content-Type": "application/json" });
					return res.end(JSON.stringify({ name: "NoUpstream", code: 503, type: "NO_UPSTREAM", message: "no gateway" }));
				}
				const port = candidates[next++ % candidates.length];
				tried.add(port);
				open.set(port, (open.get(port) ?? 0) + 1);
				let counted = true;
				const done = () => counted && ((counted = false), open.set(port, open.get(port)! - 1));
				res.once("close", done);
				const up = http.request({ host: "127.0.0.1", port, method: req.method, path: req.url, headers: { ...req.headers, connection: "close" }, agent: false }, (upRes) => {
					res.writeHead(upRes.statusCode ?? 502, upRes.headers);
					upRes.pipe(res);
				});
				up.on("error", (err: NodeJS.ErrnoException) => {
					if (err.code === "ECONNREFUSED") {
						done();
						return forward();
					}
					if (res.headersSent) return res.destroy(err);
					res.writeHead(502, { "Content-Type": "application/json" });
					res.end(JSON.stringify({ name: "BadGateway", code: 502, type: "UPSTREAM_FAILED", message: `${err.code ?? err.message} from gateway :${port}` }));
				});
				up.end(body);
			};
			forward();
		});
	});
	const port = await freePort();
	await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
	return {
		url: `http://127.0.0.1:${port}`,
		add: (p) => void (upstreams = [...upstreams.filter((u) => u !== p), p]),
		remove: (p) => void (upstreams = upstreams.filter((u) => u !== p)),
		inflight: (p) => open.get(p) ?? 0,
		close: () => new Promise<void>((resolve) => {
			server.closeAllConnections();
			server.close(() => resolve());
		}),
	};
}
