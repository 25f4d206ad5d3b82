/** Load generation: autocannon for fixed requests, a virtual-user loop for stateful scenarios. */
import autocannon from "autocannon";
import { Agent, request } from "undici";

export interface Result {
	name: string;
	rps: number;
	p50: number;
	p99: number;
	errors: number;
	requests: number;
	ratio?: number;
}

export async function cannon(name: string, url: string, opts: { connections: number; duration: number; warmup: number; requests?: any[]; headers?: Record<string, string> }): Promise<Result> {
	const base = { url, connections: opts.connections, headers: opts.headers, requests: opts.requests };
	if (opts.warmup > 0) await autocannon({ ...base, duration: opts.warmup });
	const r: any = await autocannon({ ...base, duration: opts.duration });
	return {
		name,
		rps: Math.round(r.requests.average),
		p50: r.latency.p50,
		p99: r.latency.p99,
		errors: r.errors + r.timeouts + (r.non2xx ?? 0),
		requests: r.requests.total,
	};
}

export interface VuContext {
	http: (method: string, path: string, opts?: { body?: unknown; token?: string; headers?: Record<string, string> }) => Promise<{ status: number; body: any }>;
	/** Times one request as part of the scenario's reported latency. */
	measured: <T>(fn: () => Promise<T>) => Promise<T>;
}

/**
 * `vus` virtual users run `step` in a loop for `duration` seconds (after `warmup`); only calls wrapped
 * in `measured` count towards requests/s and latency. Errors are counted and do not stop the loop.
 */
export async function virtualUsers(name: string, baseUrl: string, opts: { vus: number; duration: number; warmup: number }, setup: (vu: number) => Promise<unknown>, step: (ctx: VuContext, state: any) => Promise<void>): Promise<Result> {
	const agent = new Agent({ connections: opts.vus * 2, keepAliveTimeout: 30_000 });
	let recording = false;
	const latencies: number[] = [];
	let errors = 0;
	const http: VuContext["http"] = async (method, path, o = {}) => {
		const headers: Record<string, string> = { ...(o.headers ?? {}) };
		if (o.token) headers.authorization = `Bearer ${o.token}`;
		let body: string | undefined;
		if (o.body !== undefined) {
			body = JSON.stringify(o.body);
			headers["content-type"] = "application/json";
		}
		const res = await request(baseUrl + path, { method: method as any, headers, body, dispatcher: agent });
		const text = await res.body.text();
		return { status: res.statusCode, body: text ? JSON.parse(text) : null };
	};
	const measured = async <T>(fn: () => Promise<T>): Promise<T> => {
		const t = performance.now();
		try {
			const out = await fn();
			if (recording) {
				latencies.push(performance.now() - t);
				const status = (out as any)?.status;
				if (typeof status === "number" && status >= 400) errors++;
			}
			return out;
		} catch (err) {
			if (recording) errors++;
			throw err;
		}
	};
	const states = await Promise.all(Array.from({ length: opts.vus }, (_, i) => setup(i)));
	let stop = false;
	const loops = states.map(async (state) => {
		while (!stop) {
			try {
				await step({ http, measured }, state);
			} catch {
				/* counted in measured */
			}
		}
	});
	await new Promise((r) => setTimeout(r, opts.warmup * 1000));
	recording = true;
	const t0 = performance.now();
	await new Promise((r) => setTimeout(r, opts.duration * 1000));
	recording = false;
	const elapsed = (performance.now() - t0) / 1000;
	stop = true;
	await Promise.all(loops);
	await agent.close();
	latencies.sort((a, b) => a - b);
	const pct = (p: number) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] * 10) / 10 : 0);
	return { name, rps: Math.round(latencies.length / elapsed), p50: pct(50), p99: pct(99), errors, requests: latencies.length };
}
