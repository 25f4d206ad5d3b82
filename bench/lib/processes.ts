/** Starting shop nodes as separate processes and reading their memory and CPU from /proc. */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");

export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.listen(0, "127.0.0.1", () => {
			const port = (srv.address() as net.AddressInfo).port;
			srv.close(() => resolve(port));
		});
		srv.on("error", reject);
	});
}

export interface NodeProcess {
	proc: ChildProcess;
	port?: number;
	startMs: number;
	stop(): Promise<void>;
}

/** Spawns the built shop (moleculer-runner over dist/) and waits for /api/health (or the probe). */
export async function startShopProcess(env: Record<string, string>, opts: { gateway: boolean }): Promise<NodeProcess> {
	const port = opts.gateway ? await freePort() : undefined;
	const healthPort = await freePort();
	const t0 = Date.now();
	const proc = spawn(process.execPath, [path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", path.join(ROOT, "dist/moleculer.config.js")], {
		cwd: ROOT,
		env: {
			...process.env,
			NODE_ENV: "production",
			SERVICEDIR: path.join(ROOT, "dist/services"),
			LOGLEVEL: "warn",
			RATE_LIMIT: "0",
			AUTH_RATE_LIMIT: "0",
			JWT_SECRET: "bench-secret",
			HEALTH_PORT: String(healthPort),
			PORT: String(port ?? 0),
			...env,
		},
		stdio: ["ignore", "ignore", "pipe"],
	});
	let err = "";
	proc.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
	const url = port ? `http://127.0.0.1:${port}/api/health` : `http://127.0.0.1:${healthPort}/ready`;
	for (;;) {
		if (proc.exitCode !== null) throw new Error(`shop process exited: ${err}`);
		try {
			if ((await fetch(url)).status === 200) break;
		} catch {
			/* not up yet */
		}
		if (Date.now() - t0 > 60_000) throw new Error(`shop not healthy in 60 s: ${err}`);
		await new Promise((r) => setTimeout(r, 20));
	}
	return {
		proc,
		port,
		startMs: Date.now() - t0,
		async stop() {
			if (proc.exitCode !== null) return;
			proc.kill("SIGTERM");
			await new Promise((r) => proc.once("exit", r));
		},
	};
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
