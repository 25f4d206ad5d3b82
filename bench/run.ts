/**
 * `npm run bench`: seeds a 10,000-product catalog, starts the shop as its own process, and measures
 * each scenario for a fixed duration after a warm-up against a bare Node `http` baseline measured in
 * the same run; then the same as a cluster over NATS with two gateways. All traffic to 127.0.0.1.
 * Options: --duration S (default 10), --warmup S (default 3), --products N (default 10000), --no-cluster.
 */
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cannon, virtualUsers, type Result, type VuContext } from "./lib/load";
import { ROOT, startShopProcess, rssMb, cpuMs, freePort, type NodeProcess } from "./lib/processes";

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? Number(args[i + 1]) : def;
};
const DURATION = opt("duration", 10);
const WARMUP = opt("warmup", 3);
const PRODUCTS = opt("products", 10_000);
const CLUSTER = !args.includes("--no-cluster");
const ADMIN = { ADMIN_EMAIL: "bench-admin@example.com", ADMIN_PASSWORD: "bench admin passphrase" };

const results: Record<string, Result[]> = {};
const facts: Record<string, number | string> = {};
const log = (...a: unknown[]) => console.error("[bench]", ...a);

async function json(url: string, init?: RequestInit) {
	const r = await fetch(url, init);
	const text = await r.text();
	return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function baselineServer(bytes: Buffer): Promise<{ url: string; stop: () => void }> {
	const port = await freePort();
	const file = path.join(os.tmpdir(), `bench-baseline-${process.pid}.json`);
	fs.writeFileSync(file, bytes);
	const code = `const b=require("fs").readFileSync(${JSON.stringify(file)});require("http").createServer((q,s)=>{s.writeHead(200,{"Content-Type":"application/json; charset=utf-8","Content-Length":b.length});s.end(b)}).listen(${port},"127.0.0.1",()=>console.log("up"))`;
	const proc = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
	await new Promise((r) => proc.stdout!.once("data", r));
	return { url: `http://127.0.0.1:${port}`, stop: () => proc.kill() };
}

interface Catalog {
	slugs: string[];
	variants: string[];
	words: string[];
}

async function prepare(base: string): Promise<{ admin: string; catalog: Catalog }> {
	const login = await json(`${base}/api/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD }) });
	if (login.status !== 200) throw new Error(`admin login failed: ${JSON.stringify(login.body)}`);
	const admin = login.body.accessToken;
	const catalog: Catalog = { slugs: [], variants: [], words: [] };
	for (let page = 1; page <= 5; page++) {
		const list = await json(`${base}/api/products?pageSize=100&page=${page}`);
		for (const p of list.body.rows) {
			catalog.slugs.push(p.slug);
			catalog.words.push(...String(p.name).toLowerCase().split(/\s+/).filter((w: string) => w.length > 3));
		}
	}
	// Buyable variants with stock raised so checkouts never run out during the run.
	for (const slug of catalog.slugs.slice(0, 40)) {
		const p = await json(`${base}/api/products/${slug}`);
		const v = p.body?.variants?.[0];
		if (!v) continue;
		await json(`${base}/api/inventory/${v.id}/adjust`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${admin}` }, body: JSON.stringify({ delta: 1_000_000, reason: "bench" }) });
		catalog.variants.push(v.id);
	}
	catalog.words = [...new Set(catalog.words)].slice(0, 200);
	return { admin, catalog };
}

async function newBuyer(ctx: VuContext) {
	const email = `bench-${crypto.randomBytes(6).toString("hex")}@example.com`;
	const reg = await ctx.http("POST", "/api/auth/register", { body: { email, password: "bench buyer passphrase" } });
	if (reg.status !== 201) throw new Error(`register ${reg.status} ${JSON.stringify(reg.body)}`);
	const token = reg.body.accessToken;
	const addr = await ctx.http("POST", "/api/me/addresses", { token, body: { type: "shipping", line1: "1 Bench St", city: "Load", postalCode: "10001", country: "US", isDefault: true } });
	return { token, addressId: addr.body.id };
}

const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)];

async function scenarios(label: string, bases: string[], catalog: Catalog, baselineRps: number, conns = 32) {
	const out: Result[] = [];
	const split = (n: number) => Math.max(1, Math.floor(n / bases.length));
	const each = async (name: string, fn: (base: string) => Promise<Result>) => {
		const parts = await Promise.all(bases.map(fn));
		const r: Result = {
			name,
			rps: parts.reduce((a, b) => a + b.rps, 0),
			p50: Math.max(...parts.map((p) => p.p50)),
			p99: Math.max(...parts.map((p) => p.p99)),
			errors: parts.reduce((a, b) => a + b.errors, 0),
			requests: parts.reduce((a, b) => a + b.requests, 0),
		};
		r.ratio = Math.round((r.rps / baselineRps) * 1000) / 1000;
		out.push(r);
		log(label, name, JSON.stringify(r));
		return r;
	};
	const vuSetup = (base: string) => async () => newBuyer({ http: makeHttp(base), measured: (f) => f() });

	await each("GET /api/products?pageSize=20 (cached)", (b) => cannon("list", `${b}/api/products?pageSize=20`, { connections: split(conns), duration: DURATION, warmup: WARMUP }));
	await each("GET /api/products/:slug", (b) =>
		cannon("detail", b, { connections: split(conns), duration: DURATION, warmup: WARMUP, requests: [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/products/${pick(catalog.slugs)}` }) }] }),
	);
	await each("GET /api/search?q= (facets, 16 clients)", (b) =>
		cannon("search", b, { connections: split(16), duration: DURATION, warmup: WARMUP, requests: [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/search?q=${encodeURIComponent(pick(catalog.words))}` }) }] }),
	);
	await each("GET /api/search/autocomplete", (b) =>
		cannon("autocomplete", b, { connections: split(16), duration: DURATION, warmup: WARMUP, requests: [{ method: "GET", setupRequest: (req: any) => ({ ...req, path: `/api/search/autocomplete?q=${encodeURIComponent(pick(catalog.words).slice(0, 3))}` }) }] }),
	);
	await each("add to cart + view cart (logged in)", (b) =>
		virtualUsers("cart", b, { vus: split(conns), duration: DURATION, warmup: WARMUP }, vuSetup(b), async (ctx, s) => {
			const add = await ctx.measured(() => ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } }));
			if (add.status === 409 || add.status === 422) await ctx.http("DELETE", "/api/cart", { token: s.token });
			await ctx.measured(() => ctx.http("GET", "/api/cart", { token: s.token }));
		}),
	);
	await each("checkout (own cart and key per buyer)", (b) =>
		virtualUsers("checkout", b, { vus: split(conns), duration: DURATION, warmup: WARMUP }, vuSetup(b), async (ctx, s) => {
			await ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } });
			await ctx.measured(() => ctx.http("POST", "/api/orders", { token: s.token, headers: { "Idempotency-Key": crypto.randomUUID() }, body: { shippingAddressId: s.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } } }));
		}),
	);
	// Online Boutique's locust weights: browse product 10, view cart 3, add to cart 2, home 1, checkout 1.
	const weighted = [...Array(10).fill("browse"), ...Array(3).fill("viewCart"), ...Array(2).fill("add"), "home", "checkout"];
	await each("mixed storefront (10/3/2/1/1)", (b) =>
		virtualUsers("mixed", b, { vus: split(conns), duration: DURATION, warmup: WARMUP }, vuSetup(b), async (ctx, s) => {
			const what = pick(weighted);
			if (what === "browse") await ctx.measured(() => ctx.http("GET", `/api/products/${pick(catalog.slugs)}`));
			else if (what === "viewCart") await ctx.measured(() => ctx.http("GET", "/api/cart", { token: s.token }));
			else if (what === "add") await ctx.measured(() => ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } }));
			else if (what === "home") await ctx.measured(() => ctx.http("GET", "/api/products?pageSize=20"));
			else {
				const cart = await ctx.http("GET", "/api/cart", { token: s.token });
				if (!cart.body?.items?.length) await ctx.http("POST", "/api/cart/items", { token: s.token, body: { variantId: pick(catalog.variants), quantity: 1 } });
				await ctx.measured(() => ctx.http("POST", "/api/orders", { token: s.token, headers: { "Idempotency-Key": crypto.randomUUID() }, body: { shippingAddressId: s.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } } }));
			}
		}),
	);
	results[label] = out;
	return out;
}

function makeHttp(base: string): VuContext["http"] {
	return async (method, p, o = {}) => {
		const headers: Record<string, string> = { ...(o.headers ?? {}) };
		if (o.token) headers.authorization = `Bearer ${o.token}`;
		if (o.body !== undefined) headers["content-type"] = "application/json";
		return json(base + p, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
	};
}

async function cpuPerRequest(pids: number[], fn: () => Promise<Result>): Promise<{ result: Result; cpuMsPerReq: number }> {
	const before = pids.map(cpuMs);
	const result = await fn();
	const used = pids.map(cpuMs).reduce((a, v, i) => a + v - before[i], 0);
	return { result, cpuMsPerReq: Math.round((used / Math.max(1, result.requests)) * 1000) / 1000 };
}

async function main() {
	log("building");
	execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-data-"));
	log(`seeding ${PRODUCTS} products into ${dataDir}`);
	const t0 = Date.now();
	execFileSync(process.execPath, [path.join(ROOT, "dist/scripts/seed.js"), "--products", String(PRODUCTS)], { cwd: ROOT, env: { ...process.env, DATA_DIR: dataDir }, stdio: ["ignore", "ignore", "inherit"] });
	facts.seedSeconds = Math.round((Date.now() - t0) / 100) / 10;

	const shop = await startShopProcess({ DATA_DIR: dataDir, ...ADMIN }, { gateway: true });
	facts.startupMs = shop.startMs;
	const base = `http://127.0.0.1:${shop.port}`;
	facts.rssAfterStartMb = rssMb(shop.proc.pid!);
	const { catalog } = await prepare(base);
	facts.rssAfterSeedMb = rssMb(shop.proc.pid!);

	const listBytes = Buffer.from(await (await fetch(`${base}/api/products?pageSize=20`)).arrayBuffer());
	facts.productListBytes = listBytes.length;
	const baseline = await baselineServer(listBytes);
	const baseRes = await cannon("baseline", baseline.url, { connections: 32, duration: DURATION, warmup: WARMUP });
	baseline.stop();
	baseRes.ratio = 1;
	results.baseline = [{ ...baseRes, name: "bare node:http, same bytes (32 connections)" }];
	log("baseline", JSON.stringify(baseRes));

	const single = await cpuPerRequest([shop.proc.pid!], () => cannon("list-cpu", `${base}/api/products?pageSize=20`, { connections: 32, duration: Math.max(3, DURATION / 2), warmup: 1 }));
	facts.singleCpuMsPerRequest = single.cpuMsPerReq;
	await scenarios("single process (metrics on)", [base], catalog, baseRes.rps);
	facts.rssAfterMixedMb = rssMb(shop.proc.pid!);
	await shop.stop();

	const noMetrics = await startShopProcess({ DATA_DIR: dataDir, ...ADMIN, METRICS: "false" }, { gateway: true });
	const off = await cannon("list", `http://127.0.0.1:${noMetrics.port}/api/products?pageSize=20`, { connections: 32, duration: DURATION, warmup: WARMUP });
	off.ratio = Math.round((off.rps / baseRes.rps) * 1000) / 1000;
	results["single process (metrics off)"] = [{ ...off, name: "GET /api/products?pageSize=20 (cached)" }];
	await noMetrics.stop();

	if (CLUSTER) await cluster(dataDir, baseRes.rps);

	const report = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, durationSeconds: DURATION, warmupSeconds: WARMUP, products: PRODUCTS, facts, results };
	fs.mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
	fs.writeFileSync(path.join(ROOT, "bench/results/latest.json"), JSON.stringify(report, null, 2));
	console.log(table(report));
}

async function cluster(seededDir: string, baselineRps: number) {
	let natsBin = "";
	try {
		natsBin = execFileSync("sh", ["-c", "command -v nats-server"]).toString().trim();
	} catch {
		log("nats-server not installed: skipping the cluster run (apt-get install nats-server)");
		return;
	}
	const natsPort = await freePort();
	const nats = spawn(natsBin, ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: "ignore" });
	await new Promise((r) => setTimeout(r, 500));
	const env = { TRANSPORTER: `nats://127.0.0.1:${natsPort}`, NAMESPACE: `bench-${process.pid}`, ...ADMIN };
	const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "bench-node-"));
	const nodes: NodeProcess[] = [];
	try {
		const catalogDir = dir();
		fs.cpSync(seededDir, catalogDir, { recursive: true });
		nodes.push(
			...(await Promise.all([
				startShopProcess({ ...env, NODEID: "catalog", SERVICES: "products,search", DATA_DIR: catalogDir }, { gateway: false }),
				startShopProcess({ ...env, NODEID: "checkout", SERVICES: "orders,payments,cart", DATA_DIR: dir() }, { gateway: false }),
				startShopProcess({ ...env, NODEID: "accounts", SERVICES: "users", DATA_DIR: dir() }, { gateway: false }),
				startShopProcess({ ...env, NODEID: "consumers", SERVICES: "notifications,analytics,reviews", DATA_DIR: dir() }, { gateway: false }),
			])),
		);
		const gws = await Promise.all([1, 2].map((i) => startShopProcess({ ...env, NODEID: `gw-${i}`, SERVICES: "api", DATA_DIR: dir() }, { gateway: true })));
		nodes.push(...gws);
		const bases = gws.map((g) => `http://127.0.0.1:${g.port}`);
		for (let i = 0; i < 100; i++) {
			const h = await json(`${bases[0]}/api/health`);
			if (h.body?.services?.length >= 10) break;
			await new Promise((r) => setTimeout(r, 200));
		}
		const { catalog } = await prepare(bases[0]);
		const pids = [...nodes.map((n) => n.proc.pid!), nats.pid!];
		const cpu = await cpuPerRequest(pids, async () => {
			const parts = await Promise.all(bases.map((b) => cannon("list-cpu", `${b}/api/products?pageSize=20`, { connections: 16, duration: Math.max(3, DURATION / 2), warmup: 1 })));
			return { ...parts[0], requests: parts[0].requests + parts[1].requests };
		});
		facts.clusterCpuMsPerRequest = cpu.cpuMsPerReq;
		await scenarios("cluster over NATS (2 gateways)", bases, catalog, baselineRps);
	} finally {
		await Promise.all(nodes.map((n) => n.stop()));
		nats.kill();
	}
}

function table(report: any): string {
	const lines = [
		`Machine: ${report.machine.cpus} cores, ${report.machine.model}, Node ${report.machine.node}; ${report.durationSeconds} s per scenario after ${report.warmupSeconds} s warm-up; ${report.products} products.`,
		"",
		"| run | scenario | req/s | p50 ms | p99 ms | errors | ratio to baseline |",
		"|---|---|---:|---:|---:|---:|---:|",
	];
	for (const [run, rows] of Object.entries(report.results) as [string, Result[]][]) {
		for (const r of rows) lines.push(`| ${run} | ${r.name} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.ratio ?? ""} |`);
	}
	lines.push("", "| fact | value |", "|---|---:|");
	for (const [k, v] of Object.entries(report.facts)) lines.push(`| ${k} | ${v} |`);
	return lines.join("\n");
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
