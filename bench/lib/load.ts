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
	/** The bare-http baseline's req/s measured around this scenario (the ratio's denominator). */
	baselineRps?: number;
	/** CPU time of the measured processes during the measured window, per measured request. */
	cpuMsPerReq?: number;
	/** The machine's 1-minute load average when the scenario ended (the machine may be shared). */
	load1?: number;
}

/** Told when the measured window (after the warm-up) opens and closes, e.g. to read CPU counters. */
export interface Measured {
	start(): void;
	stop(): void;
}

interface Timing {
	duration: number;
	warmup: number;
	window?: Measured;
}

export interface Target {
	url: string;
	connections: number;
	requests?: any[];
}

/** One autocannon run of `seconds` against a target: requests, errors and latency percentiles. */
export async function blast(t: Target, seconds: number): Promise<{ requests: number; errors: number; p50: number; p99: number }> {
	const r: any = await autocannon({ url: t.url, connections: t.connections, requests: t.requests, duration: seconds });
	return { requests: r.requests.total, errors: r.errors + r.timeouts + (r.non2xx ?? 0), p50: r.latency.p50, p99: r.latency.p99 };
}

export async function cannon(url: string, opts: Timing & { connections: number; requests?: any[] }): Promise<Result> {
	const target = { url, connections: opts.connections, requests: opts.requests };
	if (opts.warmup > 0) await blast(target, opts.warmup);
	opts.window?.start();
	const r = await blast(target, opts.duration);
	opts.window?.stop();
	return { name: url, rps: Math.round(r.requests / opts.duration), p50: r.p50, p99: r.p99, errors: r.errors, requests: r.requests };
}

/**
 * The targets (one per gateway, hit together) and a baseline in alternating slices, so both see the
 * same machine: on a shared machine capacity drifts within seconds, and a ratio is only fair when
 * both sides are measured under the same conditions. Reports req/s over the measured slices, the
 * median slice's p50 and the worst slice's p99, and the baseline's req/s over its own slices.
 */
export async function alternating(targets: Target[], baseline: Target, opts: Timing & { slices: number }): Promise<{ result: Result; baselineRps: number }> {
	const seconds = opts.duration / opts.slices;
	await Promise.all(targets.map((t) => blast(t, opts.warmup)));
	await blast(baseline, 1);
	let requests = 0;
	let errors = 0;
	let baseRequests = 0;
	const p50s: number[] = [];
	const p99s: number[] = [];
	const settle = () => new Promise((r) => setTimeout(r, 300));
	for (let i = 0; i < opts.slices; i++) {
		// A pause before each slice: the side measured before must not still be busy (GC, closing sockets).
		await settle();
		baseRequests += (await blast(baseline, seconds)).requests;
		await settle();
		opts.window?.start();
		const parts = await Promise.all(targets.map((t) => blast(t, seconds)));
		opts.window?.stop();
		for (const p of parts) {
			requests += p.requests;
			errors += p.errors;
			p50s.push(p.p50);
			p99s.push(p.p99);
		}
	}
	p50s.sort((a, b) => a - b);
	return {
		result: { name: targets[0].url, rps: Math.round(requests / opts.duration), p50: p50s[Math.floor(p50s.length / 2)], p99: Math.max(...p99s), errors, requests },
		baselineRps: Math.round(baseRequests / opts.duration),
	};
}

export interface VuContext {
	http: (method: string, path: string, opts?: { body?: unknown; token?: string; headers?: Record<string, string> }) => Promise<{ status: number; body: any }>;
	/**
	 * Times one request as part of the scenario's reported latency and throughput. It is an error
	 * when it throws, or answers another status than `expect` (default: any status below 400).
	 */
	measured: <T extends { status: number }>(fn: () => Promise<T>, expect?: number) => Promise<T>;
}

/**
 * `vus` virtual users run `step` in a loop for `duration` seconds (after `warmup`); only calls wrapped
 * in `measured` count towards requests/s and latency. Errors are counted and do not stop the loop.
 */
export async function virtualUsers<S>(baseUrl: string, opts: Timing & { vus: number }, setup: (vu: number) => Promise<S>, step: (ctx: VuContext, state: S) => Promise<void>): Promise<Result> {
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
	const measured: VuContext["measured"] = async (fn, expect) => {
		const t = performance.now();
		try {
			const out = await fn();
			if (recording) {
				latencies.push(performance.now() - t);
				if (expect ? out.status !== expect : out.status >= 400) errors++;
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
	opts.window?.start();
	const t0 = performance.now();
	await new Promise((r) => setTimeout(r, opts.duration * 1000));
	recording = false;
	opts.window?.stop();
	const elapsed = (performance.now() - t0) / 1000;
	stop = true;
	await Promise.all(loops);
	await agent.close();
	latencies.sort((a, b) => a - b);
	const pct = (p: number) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] * 10) / 10 : 0);
	return { name: baseUrl, rps: Math.round(latencies.length / elapsed), p50: pct(50), p99: pct(99), errors, requests: latencies.length };
}
