/**
 * `npm run bench`: seeds a 10,000-product catalog, starts the shop as its own process, and measures
 * each scenario for a fixed duration after a warm-up against a bare Node `http` baseline measured in
 * the same run (and in slices alternating with, or around, each scenario, as the machine may be shared); then the same
 * as a cluster over NATS with two gateways. All traffic to 127.0.0.1, bounded in time.
 * Options: --duration S (default 10), --warmup S (default 3), --products N (default 10000), --no-cluster,
 * --no-build (use dist/ as it is; by default it is rebuilt when a source is newer), --only list,detail,search,autocomplete,cart,checkout,mixed,
 * --profile DIR (the single-process shop writes a V8 CPU profile there when it stops: node --cpu-prof),
 * --out FILE (the JSON report goes there instead of bench/results/latest.json).
 * Environment: BENCH_DIST=dir runs another build than dist/ (e.g. a patched copy, to measure a change
 * before making it); BENCH_NODE_ARGS="-r ./hook.js" adds node options to the single-process shop.
 * Writes bench/results/latest.json (or --out) and prints the table (Markdown) on stdout.
 */
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { alternating, cannon, virtualUsers, type Measured, type Result, type Target, type VuContext } from "./lib/load";
import { SINGLE_PROCESS_RUN } from "./lib/compare";
import { ROOT, DIST, ensureBuilt, startShopProcess, rssMb, cpuMs, freePort, servesMetrics, type NodeProcess } from "./lib/processes";

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? Number(args[i + 1]) : def;
};
const DURATION = opt("duration", 10);
const WARMUP = opt("warmup", 3);
const PRODUCTS = opt("products", 10_000);
const CLUSTER = !args.includes("--no-cluster");
const BUILD = !args.includes("--no-build");
const ONLY = args.includes("--only") ? new Set(args[args.indexOf("--only") + 1].split(",")) : null;
const wanted = (key: string) => !ONLY || ONLY.has(key);
const PROFILE_DIR = args.includes("--profile") ? path.resolve(args[args.indexOf("--profile") + 1]) : null;
const OUT = args.includes("--out") ? path.resolve(args[args.indexOf("--out") + 1]) : path.join(ROOT, "bench/results/latest.json");
/** Concurrent clients: 32 buyers/connections as in the targets; search at 16. */
const CONNS = 32;
const SEARCH_CONNS = 16;
/** Plain GET scenarios alternate with the baseline in slices of 2 s or more (see `alternating`). */
const SLICES = Math.max(1, Math.min(5, Math.floor(DURATION / 2)));
// A long token lifetime: a full run outlasts the default 15 minutes.
const SHOP_ENV = { ADMIN_EMAIL: "bench-admin@example.com", ADMIN_PASSWORD: "bench admin passphrase", JWT_TTL: "7200" };

const results: Record<string, Result[]> = {};
const facts: Record<string, number | string> = {};
const log = (...a: unknown[]) => console.error("[bench]", ...a);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

async function json(url: string, init?: RequestInit) {
	const r = await fetch(url, init);
	const text = await r.text();
	return { status: r.status, body: text ? JSON.parse(text) : null };
}

function makeHttp(base: string): VuContext["http"] {
	return async (method, p, o = {}) => {
		const headers: Record<string, string> = { ...(o.headers ?? {}) };
		if (o.token) headers.authorization = `Bearer ${o.token}`;
		if (o.body !== undefined) headers["content-type"] = "application/json";
		return json(base + p, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
	};
}

async function baselineServer(bytes: Buffer): Promise<{ url: string; pid: number; stop: () => void }> {
	const port = await freePort();
	const file = path.join(os.tmpdir(), `bench-baseline-${process.pid}.json`);
	fs.writeFileSync(file, bytes);
	const code = `const b=require("fs").readFileSync(${JSON.stringify(file)});require("http").createServer((q,s)=>{s.writeHead(200,{"Content-Type":"application/json; charset=utf-8","Content-Length":b.length});s.end(b)}).listen(${port},"127.0.0.1",()=>console.log("up"))`;
	const proc = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
	await new Promise((r) => proc.stdout!.once("data", r));
	return {
		url: `http://127.0.0.1:${port}`,
		pid: proc.pid!,
		stop: () => {
			proc.kill();
			fs.rmSync(file, { force: true });
		},
	};
}

interface Catalog {
	slugs: string[];
	variants: string[];
	words: string[];
}
interface Buyer {
	token: string;
	addressId: string;
}

/** Runs `fn` over `items` with at most `limit` at a time. */
async function inBatches<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
	const out: R[] = new Array(items.length);
	let next = 0;
	await Promise.all(
		Array.from({ length: limit }, async () => {
			while (next < items.length) {
				const i = next++;
				out[i] = await fn(items[i], i);
			}
		}),
	);
	return out;
}

/**
 * What every scenario needs, made before anything is measured: the catalog to draw from (slugs,
 * search words, 40 variants with stock raised so checkouts never run out) and a pool of logged-in
 * buyers with a shipping address. Registration is bcrypt-bound on purpose (cost 12), so buyers are
 * registered two at a time: all at once would queue for many seconds and run into request timeouts.
 */
async function prepare(base: string, buyerCount: number): Promise<{ catalog: Catalog; buyers: Buyer[] }> {
	const http = makeHttp(base);
	const login = await http("POST", "/api/auth/login", { body: { email: SHOP_ENV.ADMIN_EMAIL, password: SHOP_ENV.ADMIN_PASSWORD } });
	if (login.status !== 200) throw new Error(`admin login failed: ${JSON.stringify(login.body)}`);
	const admin = login.body.accessToken;
	const catalog: Catalog = { slugs: [], variants: [], words: [] };
	const first = await http("GET", "/api/products?pageSize=1");
	const activeProducts: number = first.body.total;
	// Slugs spread over the whole catalog (not only the first pages), so detail pages are not all hot.
	const pages = Math.max(1, Math.ceil(activeProducts / 100));
	for (let i = 0; i < 10; i++) {
		const page = 1 + Math.floor((i * pages) / 10);
		const list = await http("GET", `/api/products?pageSize=100&page=${page}`);
		if (list.status !== 200) throw new Error(`product list: ${list.status} ${JSON.stringify(list.body)}`);
		for (const p of list.body.rows) {
			catalog.slugs.push(p.slug);
			catalog.words.push(...String(p.name).toLowerCase().split(/[^a-z]+/).filter((w: string) => w.length > 3));
		}
	}
	for (const slug of catalog.slugs.slice(0, 40)) {
		const p = await http("GET", `/api/products/${slug}`);
		const v = p.body?.variants?.[0];
		if (!v) continue;
		const adj = await http("POST", `/api/inventory/${v.id}/adjust`, { token: admin, body: { delta: 1_000_000, reason: "bench" } });
		if (adj.status !== 200) throw new Error(`stock adjust: ${adj.status} ${JSON.stringify(adj.body)}`);
		catalog.variants.push(v.id);
	}
	catalog.words = [...new Set(catalog.words)].slice(0, 200);

	const buyers = await inBatches(Array.from({ length: buyerCount }), 2, async () => {
		const email = `bench-${crypto.randomBytes(8).toString("hex")}@example.com`;
		const reg = await http("POST", "/api/auth/register", { body: { email, password: "bench buyer passphrase" } });
		if (reg.status !== 201) throw new Error(`register ${reg.status} ${JSON.stringify(reg.body)}`);
		const token = reg.body.accessToken;
		const addr = await http("POST", "/api/me/addresses", { token, body: { type: "shipping", line1: "1 Bench St", city: "Load", postalCode: "10001", country: "US", isDefault: true } });
		if (addr.status !== 201) throw new Error(`address ${addr.status} ${JSON.stringify(addr.body)}`);
		return { token, addressId: addr.body.id };
	});

	return { catalog, buyers };
}

/**
 * Waits until the search index holds every active product: search is only measured over the whole
 * catalog, and nothing is measured while the start-up rebuild still competes for the CPU.
 */
async function searchIndexed(base: string) {
	const http = makeHttp(base);
	const activeProducts: number = (await http("GET", "/api/products?pageSize=1")).body.total;
	for (let i = 0; ; i++) {
		const s = await http("GET", "/api/search?pageSize=1");
		if (s.status === 200 && s.body.total >= activeProducts) return;
		if (i > 1200) throw new Error(`search index incomplete after 120 s: ${s.body?.total}/${activeProducts}`);
		await sleep(100);
	}
}

const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)];

/** CPU time of the given processes during the measured window only (not warm-up, not set-up). */
function cpuWindow(pids: number[]): Measured & { used(): number } {
	let before: number[] = [];
	let used = 0;
	return {
		start: () => {
			before = pids.map(cpuMs);
		},
		// Several windows (alternating slices) add up.
		stop: () => {
			used += pids.map(cpuMs).reduce((a, v, i) => a + v - before[i], 0);
		},
		used: () => used,
	};
}

async function scenarios(label: string, bases: string[], pids: number[], catalog: Catalog, buyers: Buyer[]) {
	const out: Result[] = [];
	const split = (n: number) => Math.max(1, Math.floor(n / bases.length));
	const each = async (key: string, name: string, fn: (base: string, part: number, window: Measured) => Promise<Result>) => {
		if (!wanted(key)) return;
		// One CPU window for all parts: the first part to start opens it, the last to stop closes it.
		const cpu = cpuWindow(pids);
		let open = 0;
		const shared: Measured = {
			start: () => void (open++ === 0 && cpu.start()),
			stop: () => void (--open === 0 && cpu.stop()),
		};
		const { result: parts, baselineRps } = await aroundBaseline(() => Promise.all(bases.map((b, i) => fn(b, i, shared))));
		const requests = parts.reduce((a, b) => a + b.requests, 0);
		const r: Result = {
			name,
			rps: parts.reduce((a, b) => a + b.rps, 0),
			// Across gateways: the slower gateway's percentiles (each part measures its own).
			p50: Math.max(...parts.map((p) => p.p50)),
			p99: Math.max(...parts.map((p) => p.p99)),
			errors: parts.reduce((a, b) => a + b.errors, 0),
			requests,
			ratio: round(parts.reduce((a, b) => a + b.rps, 0) / baselineRps),
			baselineRps,
			cpuMsPerReq: round(cpu.used() / Math.max(1, requests), 2),
			load1: load1(),
		};
		out.push(r);
		log(label, name, JSON.stringify(r));
		return r;
	};
	/** A plain GET scenario: per gateway a target, alternating with the baseline (see `alternating`). */
	const eachGet = async (key: string, name: string, target: (base: string) => Target) => {
		if (!wanted(key)) return;
		const cpu = cpuWindow(pids);
		const { result, baselineRps } = await alternating(bases.map(target), baselineTarget(), { duration: DURATION, warmup: WARMUP, slices: SLICES, window: cpu });
		const r: Result = { ...result, name, ratio: round(result.rps / baselineRps), baselineRps, cpuMsPerReq: round(cpu.used() / Math.max(1, result.requests), 2), load1: load1() };
		out.push(r);
		log(label, name, JSON.stringify(r));
	};
	const timing = { duration: DURATION, warmup: WARMUP };
	// Virtual user v of gateway `part` is buyer part*split+v: each buyer belongs to one VU only.
	const buyerOf = (part: number, vus: number) => async (vu: number) => {
		const b = buyers[part * vus + vu];
		// Every scenario starts from an empty cart.
		await makeHttp(bases[part])("DELETE", "/api/cart", { token: b.token });
		return b;
	};
	const checkoutBody = (s: Buyer) => ({ shippingAddressId: s.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } });

	const slugRequest = [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/products/${pick(catalog.slugs)}` }) }];
	const searchRequest = [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/search?q=${encodeURIComponent(pick(catalog.words))}` }) }];
	const suggestRequest = [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/search/autocomplete?q=${encodeURIComponent(pick(catalog.words).slice(0, 3))}` }) }];
	await eachGet("list", "GET /api/products?pageSize=20 (cached)", (b) => ({ url: `${b}/api/products?pageSize=20`, connections: split(CONNS) }));
	await eachGet("detail", "GET /api/products/:slug", (b) => ({ url: b, connections: split(CONNS), requests: slugRequest }));
	await eachGet("search", `GET /api/search?q= (facets, ${SEARCH_CONNS} clients)`, (b) => ({ url: b, connections: split(SEARCH_CONNS), requests: searchRequest }));
	await eachGet("autocomplete", `GET /api/search/autocomplete (${SEARCH_CONNS} clients)`, (b) => ({ url: b, connections: split(SEARCH_CONNS), requests: suggestRequest }));
	await each("cart", "add to cart + view cart (logged in)", (b, part, window) =>
		virtualUsers(b, { vus: split(CONNS), ...timing, window }, buyerOf(part, split(CONNS)), async (ctx, s) => {
			const add = await ctx.measured(() => ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } }));
			await ctx.measured(() => ctx.http("GET", "/api/cart", { token: s.token }));
			// Keep carts at a shopper's size: a cart of 40 lines would measure something else.
			if ((add.body?.items?.length ?? 0) >= 5) await ctx.http("DELETE", "/api/cart", { token: s.token });
		}),
	);
	await each("checkout", "checkout (own cart and key per buyer)", (b, part, window) =>
		virtualUsers(b, { vus: split(CONNS), ...timing, window }, buyerOf(part, split(CONNS)), async (ctx, s) => {
			await ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } });
			await ctx.measured(() => ctx.http("POST", "/api/orders", { token: s.token, headers: { "Idempotency-Key": crypto.randomUUID() }, body: checkoutBody(s) }), 201);
		}),
	);
	// Online Boutique's locust weights: browse product 10, view cart 3, add to cart 2, home 1, checkout 1.
	const weighted = [...Array(10).fill("browse"), ...Array(3).fill("viewCart"), ...Array(2).fill("add"), "home", "checkout"];
	await each("mixed", "mixed storefront (10/3/2/1/1)", (b, part, window) =>
		virtualUsers(b, { vus: split(CONNS), ...timing, window }, buyerOf(part, split(CONNS)), async (ctx, s) => {
			const what = pick(weighted);
			if (what === "browse") await ctx.measured(() => ctx.http("GET", `/api/products/${pick(catalog.slugs)}`));
			else if (what === "viewCart") await ctx.measured(() => ctx.http("GET", "/api/cart", { token: s.token }));
			else if (what === "add") await ctx.measured(() => ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } }));
			else if (what === "home") await ctx.measured(() => ctx.http("GET", "/api/products?pageSize=20"));
			else {
				const cart = await ctx.measured(() => ctx.http("GET", "/api/cart", { token: s.token }));
				if (!cart.body?.items?.length) await ctx.measured(() => ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } }));
				await ctx.measured(() => ctx.http("POST", "/api/orders", { token: s.token, headers: { "Idempotency-Key": crypto.randomUUID() }, body: checkoutBody(s) }), 201);
			}
		}),
	);
	results[label] = out;
	return out;
}

const load1 = () => round(os.loadavg()[0], 1);

/** The bare-http server answering the product list's bytes, kept running through the whole run. */
let baseline: { url: string; pid: number; listBytes: number };

const baselineTarget = (): Target => ({ url: baseline.url, connections: CONNS });

/** The bare `node:http` ceiling over the full duration: the headline baseline row. */
async function measureBaseline(when: string): Promise<number> {
	const cpu = cpuWindow([baseline.pid]);
	const r = await cannon(baseline.url, { connections: CONNS, duration: DURATION, warmup: WARMUP, window: cpu });
	const row: Result = { ...r, name: `bare node:http, same ${baseline.listBytes} bytes (${CONNS} connections), ${when}`, ratio: 1, cpuMsPerReq: round(cpu.used() / Math.max(1, r.requests), 2), load1: load1() };
	(results.baseline ??= []).push(row);
	log("baseline", JSON.stringify(row));
	return r.rps;
}

/**
 * Runs a measurement between two short baseline slices (just before and just after it): this machine
 * may be shared, and a ratio is only fair against a baseline taken under the same load.
 */
async function aroundBaseline<T>(measure: () => Promise<T>): Promise<{ result: T; baselineRps: number }> {
	const slice = async () => (await cannon(baseline.url, { connections: CONNS, duration: Math.min(3, DURATION), warmup: 0 })).rps;
	const before = await slice();
	const result = await measure();
	const after = await slice();
	return { result, baselineRps: Math.round((before + after) / 2) };
}

async function main() {
	if (BUILD) ensureBuilt(false, (m) => log(m));
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-data-"));
	try {
		await run(dataDir);
	} finally {
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}

async function run(dataDir: string) {
	log(`seeding ${PRODUCTS} products into ${dataDir}`);
	const t0 = Date.now();
	execFileSync(process.execPath, [path.join(DIST, "scripts/seed.js"), "--products", String(PRODUCTS)], { cwd: ROOT, env: { ...process.env, DATA_DIR: dataDir }, stdio: ["ignore", "ignore", "inherit"] });
	facts.seedSeconds = round((Date.now() - t0) / 1000, 1);

	const nodeArgs = [...(PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : []), ...(process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [])];
	const shop = await startShopProcess({ DATA_DIR: dataDir, ...SHOP_ENV }, { gateway: true, nodeArgs });
	let server: Awaited<ReturnType<typeof baselineServer>> | undefined;
	try {
		try {
			facts.startupToHealthyMs = shop.startMs;
			if (!(await servesMetrics(shop))) throw new Error("the shop measured as shipped serves no metrics: broker metrics are off");
			const base = `http://127.0.0.1:${shop.port}`;
			const pid = shop.proc.pid!;
			facts.rssAtHealthyMb = rssMb(pid);
			// Timed from the spawn, alongside the registrations (which compete with the rebuild for the CPU).
			const indexedMs = searchIndexed(base).then(() => Date.now() - shop.spawnedAt);
			const { catalog, buyers } = await prepare(base, CONNS);
			facts.startupToSearchIndexedMs = await indexedMs;
			facts.rssSeededAndIndexedMb = rssMb(pid);

			const listBytes = Buffer.from(await (await fetch(`${base}/api/products?pageSize=20`)).arrayBuffer());
			facts.productListBytes = listBytes.length;
			server = await baselineServer(listBytes);
			baseline = { url: server.url, pid: server.pid, listBytes: listBytes.length };
			await measureBaseline("the ceiling for any Node gateway here");

			await scenarios(SINGLE_PROCESS_RUN, [base], [pid], catalog, buyers);
			facts.rssAfterScenariosMb = rssMb(pid);
		} finally {
			await shop.stop();
		}
		if (wanted("list")) await metricsOff(dataDir);
		if (CLUSTER) await cluster(dataDir);
	} finally {
		server?.stop();
	}
	writeReport();
}

/** The cached list once more on a fresh single process without broker metrics. */
async function metricsOff(dataDir: string) {
	const noMetrics = await startShopProcess({ DATA_DIR: dataDir, ...SHOP_ENV, METRICS_ENABLED: "false" }, { gateway: true });
	try {
		if (await servesMetrics(noMetrics)) throw new Error("the shop measured without metrics serves them: METRICS_ENABLED=false was not taken");
		await searchIndexed(`http://127.0.0.1:${noMetrics.port}`);
		const cpu = cpuWindow([noMetrics.proc.pid!]);
		const target = { url: `http://127.0.0.1:${noMetrics.port}/api/products?pageSize=20`, connections: CONNS };
		const { result: off, baselineRps } = await alternating([target], baselineTarget(), { duration: DURATION, warmup: WARMUP, slices: SLICES, window: cpu });
		results["single process (metrics off)"] = [{ ...off, name: "GET /api/products?pageSize=20 (cached)", ratio: round(off.rps / baselineRps), baselineRps, cpuMsPerReq: round(cpu.used() / Math.max(1, off.requests), 2), load1: load1() }];
		log("metrics off", JSON.stringify(results["single process (metrics off)"][0]));
	} finally {
		await noMetrics.stop();
	}
}

function writeReport() {
	const report = {
		date: new Date().toISOString(),
		machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadAverageAtEnd: os.loadavg().map((l) => round(l, 2)) },
		durationSeconds: DURATION,
		warmupSeconds: WARMUP,
		products: PRODUCTS,
		connections: CONNS,
		facts,
		results,
	};
	fs.mkdirSync(path.dirname(OUT), { recursive: true });
	fs.writeFileSync(OUT, JSON.stringify(report, null, 2) + "\n");
	console.log(table(report));
}

async function cluster(seededDir: string) {
	let natsBin: string;
	try {
		natsBin = execFileSync("sh", ["-c", "command -v nats-server"]).toString().trim();
	} catch {
		log("nats-server not installed: skipping the cluster run (apt-get install nats-server)");
		facts.cluster = "skipped: nats-server not installed";
		return;
	}
	const natsPort = await freePort();
	const nats = spawn(natsBin, ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: "ignore" });
	await sleep(500);
	const env = { TRANSPORTER: `nats://127.0.0.1:${natsPort}`, NAMESPACE: `bench-${process.pid}`, ...SHOP_ENV };
	const dirs: string[] = [];
	const dir = () => {
		const d = fs.mkdtempSync(path.join(os.tmpdir(), "bench-node-"));
		dirs.push(d);
		return d;
	};
	const nodes: NodeProcess[] = [];
	try {
		const catalogDir = dir();
		fs.cpSync(seededDir, catalogDir, { recursive: true });
		// Each node owns its services' files (NeDB belongs to one process); the catalog node gets the seeded ones.
		const workers = await Promise.all([
			startShopProcess({ ...env, NODEID: "catalog", SERVICES: "products,search", DATA_DIR: catalogDir }, { gateway: false }),
			startShopProcess({ ...env, NODEID: "checkout", SERVICES: "orders,payments,cart", DATA_DIR: dir() }, { gateway: false }),
			startShopProcess({ ...env, NODEID: "accounts", SERVICES: "users", DATA_DIR: dir() }, { gateway: false }),
			startShopProcess({ ...env, NODEID: "consumers", SERVICES: "notifications,analytics,reviews", DATA_DIR: dir() }, { gateway: false }),
		]);
		nodes.push(...workers);
		const gws = await Promise.all([1, 2].map((i) => startShopProcess({ ...env, NODEID: `gw-${i}`, SERVICES: "api", DATA_DIR: dir() }, { gateway: true })));
		nodes.push(...gws);
		const bases = gws.map((g) => `http://127.0.0.1:${g.port}`);
		for (let i = 0; ; i++) {
			const h = await json(`${bases[0]}/api/health`);
			if (h.body?.services?.length >= 10) break;
			if (i > 300) throw new Error(`cluster not complete: ${JSON.stringify(h.body)}`);
			await sleep(200);
		}
		const { catalog, buyers } = await prepare(bases[0], CONNS);
		await searchIndexed(bases[0]);
		facts.clusterProcesses = `${nodes.length} shop nodes + nats-server`;
		await scenarios("cluster over NATS (2 gateways)", bases, [...nodes.map((n) => n.proc.pid!), nats.pid!], catalog, buyers);
	} finally {
		await Promise.all(nodes.map((n) => n.stop()));
		nats.kill();
		for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
	}
}

function table(report: any): string {
	const lines = [
		`Machine: ${report.machine.cpus} cores (${report.machine.model}), Node ${report.machine.node}; ${report.durationSeconds} s per scenario after ${report.warmupSeconds} s warm-up; ${report.products} products; ${report.connections} connections or buyers unless stated. Plain GETs alternate with the baseline in ${SLICES} slices; logged-in flows are measured between 3 s of baseline before and after. Each ratio is against that baseline.`,
		"",
		"| run | scenario | req/s | p50 ms | p99 ms | errors | baseline req/s around it | ratio to baseline | CPU ms/req (all processes) | load (1 min) |",
		"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
	];
	for (const [run, rows] of Object.entries(report.results) as [string, Result[]][]) {
		for (const r of rows) lines.push(`| ${run} | ${r.name} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.baselineRps ?? ""} | ${r.ratio ?? ""} | ${r.cpuMsPerReq ?? ""} | ${r.load1 ?? ""} |`);
	}
	lines.push("", "| fact | value |", "|---|---:|");
	for (const [k, v] of Object.entries(report.facts)) lines.push(`| ${k} | ${v} |`);
	return lines.join("\n");
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
