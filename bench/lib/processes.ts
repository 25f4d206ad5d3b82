/** Starting shop nodes as separate processes and reading their memory and CPU from /proc. */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
/** The build that runs: dist/, or BENCH_DIST (a patched copy, to measure a change before making it). */
export const DIST = process.env.BENCH_DIST ? path.resolve(process.env.BENCH_DIST) : path.join(ROOT, "dist");

/** Ports this process handed out already: two picks before either is bound must differ. */
const handedOut = new Set<number>();

/** Each jest worker (tests run in parallel, e.g. the crash test's two halves) picks from its own range. */
const PORT_RANGE = 3000;
const portBase = 20_000 + ((Number(process.env.JEST_WORKER_ID ?? 1) - 1) % 4) * PORT_RANGE;

/**
 * A port for a child process to listen on, picked below the kernel's ephemeral range (32768 and up on
 * Linux): a port from that range, free when checked, may be taken by any outgoing connection (NATS,
 * Redis, HTTP clients) before the child binds it, which made a cluster test's gateway die with
 * EADDRINUSE. Checked on all interfaces, as the gateway listens there.
 */
export async function freePort(): Promise<number> {
	for (let tries = 0; ; tries++) {
		if (tries > 200) throw new Error(`No free port between ${portBase} and ${portBase + PORT_RANGE}`);
		const port = portBase + Math.floor(Math.random() * PORT_RANGE);
		if (handedOut.has(port)) continue;
		const free = await new Promise<boolean>((resolve) => {
			const srv = net.createServer();
			srv.once("error", () => resolve(false));
			srv.listen(port, "0.0.0.0", () => srv.close(() => resolve(true)));
		});
		if (free) {
			handedOut.add(port);
			return port;
		}
	}
}

export interface NodeProcess {
	proc: ChildProcess;
	port?: number;
	/** Where its Prometheus reporter listens, when metrics are on. */
	metricsPort: number;
	/** Date.now() when the process was spawned, and how long it took to answer healthy. */
	spawnedAt: number;
	startMs: number;
	stop(): Promise<void>;
}

/** Spawns the built shop (moleculer-runner over dist/) and waits for /api/health (or the probe). */
export async function startShopProcess(env: Record<string, string>, opts: { gateway: boolean; nodeArgs?: string[] }): Promise<NodeProcess> {
	const port = opts.gateway ? await freePort() : undefined;
	const healthPort = await freePort();
	// Every node runs a Prometheus reporter: each needs its own port (the default 3030 would clash).
	const metricsPort = await freePort();
	const t0 = Date.now();
	const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", path.join(DIST, "moleculer.config.js")], {
		cwd: ROOT,
		env: {
			...process.env,
			NODE_ENV: "production",
			SERVICEDIR: path.join(DIST, "services"),
			LOGLEVEL: "warn",
			RATE_LIMIT: "0",
			AUTH_RATE_LIMIT: "0",
			JWT_SECRET: "bench-secret-0123456789abcdef0123456789",
			HEALTH_PORT: String(healthPort),
			METRICS_PORT: String(metricsPort),
			PORT: String(port ?? 0),
			...env,
		},
		stdio: ["ignore", "ignore", "pipe"],
	});
	let err = "";
	proc.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
	const url = port ? `http://127.0.0.1:${port}/api/health` : `http://127.0.0.1:${healthPort}/ready`;
	for (;;) {
		if (proc.exitCode !== null) throw new Error(`shop process exited (${proc.exitCode}): ${err}`);
		try {
			if ((await fetch(url)).status === 200) break;
		} catch {
			/* not up yet */
		}
		if (Date.now() - t0 > 60_000) {
			proc.kill("SIGKILL");
			throw new Error(`shop not healthy in 60 s: ${err}`);
		}
		await new Promise((r) => setTimeout(r, 20));
	}
	return {
		proc,
		port,
		metricsPort,
		spawnedAt: t0,
		startMs: Date.now() - t0,
		async stop() {
			if (proc.exitCode !== null || proc.signalCode !== null) return;
			const exited = new Promise((r) => proc.once("exit", r));
			proc.kill("SIGTERM");
			// A graceful stop waits for in-flight requests; one that hangs is not the benchmark's business.
			const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
			await exited;
			clearTimeout(timer);
		},
	};
}

/** Whether the node serves Prometheus metrics: a benchmark says which way it ran, and checks it. */
export async function servesMetrics(node: NodeProcess): Promise<boolean> {
	try {
		return (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).status === 200;
	} catch {
		return false;
	}
}

/** Resident set size in MB, from /proc. */
export function rssMb(pid: number): number {
	const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
	const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
	return Math.round(kb / 102.4) / 10;
}

/** User + system CPU time of a process in milliseconds, from /proc. */
export function cpuMs(pid: number): number {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	const ticks = Number(fields[11]) + Number(fields[12]);
	return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/** The newest modification time of the files under `dir` (recursively), 0 when it does not exist. */
function newestMtime(dir: string): number {
	if (!fs.existsSync(dir)) return 0;
	const stat = fs.statSync(dir);
	if (!stat.isDirectory()) return stat.mtimeMs;
	return Math.max(0, ...fs.readdirSync(dir).map((f) => newestMtime(path.join(dir, f))));
}

/**
 * Builds dist/ when a source is newer than the last build (or `force`). A type error elsewhere in
 * the tree does not stop a measurement: tsc still emits, and the warning says so.
 */
export function ensureBuilt(force = false, log: (msg: string) => void = (m) => console.error(m)): void {
	if (process.env.BENCH_DIST) return;
	const built = fs.existsSync(path.join(ROOT, "dist/moleculer.config.js")) ? fs.statSync(path.join(ROOT, "dist/moleculer.config.js")).mtimeMs : 0;
	const sources = Math.max(...["moleculer.config.ts", "services", "mixins", "lib", "adapters", "scripts", "templates"].map((d) => newestMtime(path.join(ROOT, d))));
	if (!force && built > sources) return;
	log("building dist/ (npm run build)");
	buildDist(ROOT, log);
}

/** `npm run build` in a checkout of the shop (this one, or another commit's worktree). */
export function buildDist(dir: string, log: (msg: string) => void): void {
	try {
		execFileSync("npm", ["run", "build", "--silent"], { cwd: dir, stdio: "inherit" });
	} catch {
		log("WARNING: the build reported errors; running what tsc emitted");
		execFileSync(process.execPath, [path.join(dir, "scripts/copy-assets.js")], { cwd: dir, stdio: "inherit" });
	}
}
