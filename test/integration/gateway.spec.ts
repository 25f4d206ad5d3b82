/** The gateway's contract: statuses of API.md, auth, limits, health and the OpenAPI document. */
import http from "node:http";
import net from "node:net";
import zlib from "node:zlib";
import jwt from "jsonwebtoken";
import SwaggerParser from "@apidevtools/swagger-parser";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { MAX_BODY_ITEMS } from "../../lib/request-shape";
import { setEnv } from "../helpers/env";
import type { RequestOptions } from "../helpers/http";
import { waitFor, within } from "../helpers/wait";
import { signAccessToken, jwtSecret, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../lib/jwt";
import { HealthMixin } from "../../mixins/health.mixin";
import { SHOP_ROUTES } from "../../lib/rest-routes";
import { FakeUsers as FakeSessions, fakeToken } from "../helpers/fakes";
import "../../mixins/types";

// Stands in for the users service: every session is user u1's; sessions "admin-*" are an admin's, "revoked-*" are revoked.
const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [HealthMixin],
	actions: {
		checkSession: {
			params: { sid: "string" },
			handler: (ctx: Context<{ sid: string }>) => ({ active: !ctx.params.sid.startsWith("revoked"), userId: "u1", role: ctx.params.sid.startsWith("admin") ? "admin" : "customer" }),
		},
	},
};

/** How many times probe.count ran. */
let probeCounted = 0;

const Probe: ServiceSchema = {
	name: "probe",
	settings: { rest: "/" },
	actions: {
		echo: {
			rest: "POST /probe/echo",
			params: { name: { type: "string", min: 2 }, qty: { type: "number", integer: true, min: 1 } },
			handler: (ctx: Context<any>) => ctx.params,
		},
		me: { rest: "GET /probe/me", auth: "required", handler: (ctx: Context<unknown, any>) => ctx.meta.user },
		whoami: { rest: "GET /probe/whoami", auth: "optional", params: {}, handler: (ctx: Context<unknown, any>) => ({ user: ctx.meta.user ?? null }) },
		open: { rest: "GET /probe/open", params: {}, handler: (ctx: Context<unknown, any>) => ({ user: ctx.meta.user ?? null }) },
		nothing: { rest: "POST /probe/nothing", params: {}, handler: () => ({ ok: true }) },
		count: { rest: "POST /probe/count", params: {}, handler: () => ({ count: ++probeCounted }) },
		list: { rest: "GET /probe/list", params: { q: { type: "string", optional: true } }, handler: (ctx: Context<any>) => ctx.params },
		admin: { rest: "GET /probe/admin", roles: ["admin"], handler: () => ({ ok: true }) },
		login: { rest: "POST /auth/probe", rateLimit: "auth", params: {}, handler: () => ({ ok: true }) },
		// Under /auth without saying so: the path alone puts it in the auth bucket.
		logout: { rest: "POST /auth/probe-out", params: {}, handler: () => ({ ok: true }) },
		crash: { rest: "GET /probe/crash", handler: () => { throw new Error("secret internals at /srv/db"); } },
		internal: { handler: () => "never over HTTP" },
	},
};

const token = (role: "customer" | "admin" = "customer", sid = role === "admin" ? "admin-s1" : "s1", sub = "u1") => signAccessToken({ sub, role, sid });
const expiredToken = (claims: { sub: string; role: string; sid: string }) =>
	jwt.sign({ role: claims.role, sid: claims.sid, exp: Math.floor(Date.now() / 1000) - 10 }, jwtSecret(), { algorithm: "HS256", subject: claims.sub, issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE });

/** A body just over the gateway's 1 MB limit. */
const BODY_OVER_LIMIT = 1024 * 1024 + 100;

/** A raw connection (node:net: what an HTTP client would hide) that sends `request` and records what comes back and when the gateway closes it. */
function rawConnection(url: string, request: string | string[]) {
	const socket = net.connect(Number(new URL(url).port), "127.0.0.1");
	let received = "";
	socket.on("data", (d: Buffer) => (received += d.toString()));
	const closedAt = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
	socket.on("error", () => undefined);
	for (const part of Array.isArray(request) ? request : [request]) socket.write(part);
	return { socket, closedAt, received: () => received };
}

/**
 * A client that reads only once it has sent everything: `head` and `body` go out on a raw connection
 * that does not read meanwhile (what comes back waits in the socket, where a reset would discard it),
 * then it reads to the gateway's close. Returns what it read and the socket's error, if any.
 */
async function sendAllThenRead(url: string, head: string, body: Buffer): Promise<{ received: string; error: string | null }> {
	const socket = net.connect(Number(new URL(url).port), "127.0.0.1");
	await new Promise((r) => socket.once("connect", r));
	socket.pause();
	let received = "";
	let error: string | null = null;
	socket.on("data", (d: Buffer) => (received += d.toString()));
	socket.on("error", (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
	const closed = new Promise((r) => socket.once("close", r));
	socket.write(head);
	await new Promise((r) => socket.write(body, r));
	await new Promise((r) => setTimeout(r, 200));
	socket.resume();
	socket.end();
	await closed;
	return { received, error };
}

/** What the gateway answers on a raw connection it closes afterwards (a refusal, or `Connection: close`). */
async function rawExchange(url: string, request: string | string[]): Promise<string> {
	const conn = rawConnection(url, request);
	await conn.closedAt;
	return conn.received();
}

describe("gateway", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { shopRateLimit: { windowMs: 60_000, general: 1000, auth: 5 } } });
	});
	afterAll(() => shop.stop());

	test("health answers 200 with the services and the node", async () => {
		const res = await shop.http.get("/api/health");
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ status: "ok", nodeID: shop.broker.nodeID });
		expect(res.body.services).toEqual(expect.arrayContaining(["users", "probe", "api"]));
	});

	test("401 without a token, with a bad signature, alg none, expired, or a revoked session", async () => {
		expect((await shop.http.get("/api/probe/me")).status).toBe(401);
		const forged = jwt.sign({ role: "admin", sid: "s1" }, "another-secret", { algorithm: "HS256", subject: "u1", issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE });
		expect((await shop.http.get("/api/probe/me", { token: forged })).status).toBe(401);
		const none = jwt.sign({ role: "admin", sid: "s1", sub: "u1", iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE }, "", { algorithm: "none" } as any);
		expect((await shop.http.get("/api/probe/me", { token: none })).status).toBe(401);
		const expired = jwt.sign({ role: "customer", sid: "s1", exp: Math.floor(Date.now() / 1000) - 10 }, jwtSecret(), { algorithm: "HS256", subject: "u1", issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE });
		const exp = await shop.http.get("/api/probe/me", { token: expired });
		expect(exp.status).toBe(401);
		expect(exp.body.type).toBe("TOKEN_EXPIRED");
		const otherAudience = jwt.sign({ role: "customer", sid: "s1" }, jwtSecret(), { algorithm: "HS256", subject: "u1", issuer: TOKEN_ISSUER, audience: "someone-else" });
		expect((await shop.http.get("/api/probe/me", { token: otherAudience })).status).toBe(401);
		expect((await shop.http.get("/api/probe/me", { token: token("customer", "revoked-1") })).status).toBe(401);
		const ok = await shop.http.get("/api/probe/me", { token: token() });
		expect(ok.status).toBe(200);
		expect(ok.body).toEqual({ id: "u1", role: "customer", sid: "s1" });
	});

	test("401 INVALID_TOKEN for a well-signed token whose user or role is not its session's", async () => {
		// Whoever learns JWT_SECRET can sign anything, but not make their session another user's or an admin's.
		for (const forged of [token("admin", "s1"), token("customer", "s1", "u2")]) {
			const res = await shop.http.get("/api/probe/me", { token: forged });
			expect(res.status).toBe(401);
			expect(res.body.type).toBe("INVALID_TOKEN");
		}
		// Less than the session holds is what a promoted user's older tokens carry: refreshed, not forged.
		const outdated = await shop.http.get("/api/probe/me", { token: token("customer", "admin-s1") });
		expect(outdated.status).toBe(401);
		expect(outdated.body.type).toBe("TOKEN_EXPIRED");
		expect((await shop.http.get("/api/probe/admin", { token: token("admin", "s1") })).status).toBe(401);
		expect((await shop.http.get("/api/probe/me", { token: token("admin") })).body).toEqual({ id: "u1", role: "admin", sid: "admin-s1" });
	});

	test("a route that needs no user ignores the Authorization header, whatever it holds; an optional one still checks it", async () => {
		const expired = expiredToken({ sub: "u1", role: "customer", sid: "s1" });
		for (const authorization of [`Bearer ${expired}`, "Bearer garbage", `Bearer ${token("customer", "revoked-1")}`, "Basic dXNlcjpwdw==", `Bearer ${token()}`]) {
			const res = await shop.http.get("/api/probe/open", { headers: { authorization } });
			expect({ authorization, status: res.status, body: res.body }).toEqual({ authorization, status: 200, body: { user: null } });
		}
		const stale = await shop.http.get("/api/probe/whoami", { token: expired });
		expect(stale.status).toBe(401);
		expect(stale.body.type).toBe("TOKEN_EXPIRED");
		expect((await shop.http.get("/api/probe/whoami", { headers: { authorization: "Bearer garbage" } })).status).toBe(401);
		expect((await shop.http.get("/api/probe/whoami", { token: token("customer", "revoked-1") })).status).toBe(401);
		expect((await shop.http.get("/api/probe/whoami")).body).toEqual({ user: null });
		expect((await shop.http.get("/api/probe/whoami", { token: token() })).body).toEqual({ user: { id: "u1", role: "customer", sid: "s1" } });
	});

	test("every response says nosniff, errors included; only answers that depend on who asks say no-store", async () => {
		const responses = {
			health: await shop.http.get("/api/health"),
			ok: await shop.http.get("/api/probe/list?q=a"),
			head: await fetch(`${shop.url}/api/probe/list`, { method: "HEAD" }),
			optionalAnonymous: await shop.http.get("/api/probe/whoami"),
			// The route reads no user: the token is not looked at, and the answer is everyone's.
			openWithToken: await shop.http.get("/api/probe/open", { token: token() }),
			invalid: await shop.http.post("/api/probe/echo", { name: "x", qty: 0 }),
			malformed: await shop.http.request("POST", "/api/probe/echo", { raw: "{" }),
			crash: await shop.http.get("/api/probe/crash"),
			unknown: await shop.http.get("/api/nope"),
			outside: await shop.http.get("/elsewhere"),
			preflight: await fetch(`${shop.url}/api/probe/echo`, { method: "OPTIONS", headers: { origin: "https://shop.example", "access-control-request-method": "POST" } }),
		};
		for (const [what, res] of Object.entries(responses)) {
			expect({ what, nosniff: res.headers.get("x-content-type-options"), cache: res.headers.get("cache-control") }).toEqual({ what, nosniff: "nosniff", cache: null });
		}
		// No such route here, but the paths are the ones that carry tokens, personal data, orders and carts.
		for (const path of ["/api/me", "/api/me/addresses", "/api/ME", "/api/auth/anything?x=1", "/api/cart", "/api/cart/items", "/api/orders?page=1", "/api/orders/o1"]) {
			expect({ path, cache: (await shop.http.get(path)).headers.get("cache-control") }).toEqual({ path, cache: "no-store" });
		}
		for (const path of ["/api/merchandise", "/api/cartography", "/api/ordersheet"]) {
			expect({ path, cache: (await shop.http.get(path)).headers.get("cache-control") }).toEqual({ path, cache: null });
		}
		// Routes for a user or an admin, whatever the answer (their refusals say who may ask); an optional-user
		// route when it answered a signed-in user.
		const personal = {
			user: await shop.http.get("/api/probe/me", { token: token() }),
			noToken: await shop.http.get("/api/probe/me"),
			admin: await shop.http.get("/api/probe/admin", { token: token("admin") }),
			notAdmin: await shop.http.get("/api/probe/admin", { token: token() }),
			headOfUser: await fetch(`${shop.url}/api/probe/me`, { method: "HEAD", headers: { authorization: `Bearer ${token()}` } }),
			optionalSignedIn: await shop.http.get("/api/probe/whoami", { token: token() }),
		};
		for (const [what, res] of Object.entries(personal)) {
			expect({ what, cache: res.headers.get("cache-control") }).toEqual({ what, cache: "no-store" });
		}
		expect(personal.user.status).toBe(200);
		expect(personal.notAdmin.status).toBe(403);
	});

	test("403 for a customer on an admin route, 200 for an admin", async () => {
		expect((await shop.http.get("/api/probe/admin")).status).toBe(401);
		expect((await shop.http.get("/api/probe/admin", { token: token("customer") })).status).toBe(403);
		expect((await shop.http.get("/api/probe/admin", { token: token("admin") })).status).toBe(200);
	});

	test("503, not 404, for a route whose service has gone (its last node died); 404 stays for routes that never were", async () => {
		const Parcel: ServiceSchema = { name: "parcels", settings: { rest: "/" }, actions: { track: { rest: "GET /parcels/:id", params: { id: "string" }, handler: (ctx: Context<any>) => ({ id: ctx.params.id }) } } };
		const parcels = shop.broker.createService(Parcel);
		await shop.broker.waitForServices("parcels");
		await waitFor(async () => (await shop.http.get("/api/parcels/p1")).status, (status) => status === 200);
		await shop.broker.destroyService(parcels);
		// Until the gateway rebuilds its routes the call itself fails (503 as well); then the route is gone.
		const api = shop.broker.getLocalService("api") as unknown as { aliases: Array<{ action?: string }> };
		await waitFor(() => api.aliases.some((a) => a.action === "parcels.track"), (present) => !present);
		const gone = await shop.http.get("/api/parcels/p2");
		expect(gone.status).toBe(503);
		expect(gone.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
		expect(gone.headers.get("retry-after")).toBe("1");
		expect((await shop.http.post("/api/parcels/p2", {})).status).toBe(404);
		expect((await shop.http.get("/api/parcels")).status).toBe(404);
		// The API document still describes it, as it was: clients are generated from it whichever nodes are up.
		const doc = (await shop.http.get("/api/openapi.json")).body;
		expect(doc.paths["/api/parcels/{id}"].get).toMatchObject({ summary: "parcels.track", parameters: [expect.objectContaining({ name: "id", in: "path" })] });
	});

	test("the API document describes every route of the shop, also those whose service this gateway has never reached", async () => {
		const doc = (await shop.http.get("/api/openapi.json")).body;
		await SwaggerParser.validate(structuredClone(doc));
		const documented = Object.entries<Record<string, unknown>>(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{[^}]+\}/g, ":")}`));
		for (const route of SHOP_ROUTES) expect(documented).toContain(route.replace(/:[A-Za-z]+/g, ":"));
		const unreached = doc.paths["/api/orders/{id}/cancel"].post;
		expect(unreached.summary).toMatch(/has not been reachable from this gateway yet/);
		// No guessed success, schema or security for a client generator to take for the contract.
		expect(Object.keys(unreached.responses).sort()).toEqual(["503", "default"]);
		expect(unreached.security).toBeUndefined();
	});

	test("503 for a shop route whose service this gateway has never seen (its nodes were down when the gateway started)", async () => {
		for (const [method, path] of [["GET", "/api/products?pageSize=5"], ["GET", "/api/products/p1/reviews"], ["POST", "/api/orders/o1/cancel"], ["DELETE", "/api/cart/items/v1"]] as const) {
			const res = await shop.http.request(method, path, method === "GET" ? {} : { body: {} });
			expect({ method, path, status: res.status, type: res.body?.type }).toEqual({ method, path, status: 503, type: "SERVICE_UNAVAILABLE" });
		}
		// Not a route of the shop, however close: 404; a path of the shop with a method it does not take: 405.
		expect((await shop.http.get("/api/products/p1/reviews/r1")).status).toBe(404);
		const put = await shop.http.request("PUT", "/api/products/p1", { body: {} });
		expect({ status: put.status, allow: put.headers.get("allow") }).toEqual({ status: 405, allow: "GET, HEAD, PATCH, DELETE, OPTIONS" });
	});

	test("HEAD answers as the GET would, without the body; 405 where there is no GET", async () => {
		const head = await fetch(`${shop.url}/api/probe/list?q=a`, { method: "HEAD" });
		expect(head.status).toBe(200);
		expect(head.headers.get("content-type")).toContain("application/json");
		expect(await head.text()).toBe("");
		// The GET's length, which Node leaves out for a HEAD.
		const get = await fetch(`${shop.url}/api/probe/list?q=a`);
		expect(head.headers.get("content-length")).toBe(String(Buffer.byteLength(await get.text())));
		expect(head.headers.get("content-length")).toBe(get.headers.get("content-length"));
		expect((await fetch(`${shop.url}/api/health`, { method: "HEAD" })).status).toBe(200);
		expect((await fetch(`${shop.url}/api/probe/me`, { method: "HEAD" })).status).toBe(401);
		const noGet = await fetch(`${shop.url}/api/probe/echo`, { method: "HEAD" });
		expect({ status: noGet.status, allow: noGet.headers.get("allow") }).toEqual({ status: 405, allow: "POST, OPTIONS" });
	});

	test("an absolute-form target (as proxies send) and escaped letters in the path reach the route, as its plain spelling does", async () => {
		const ask = async (target: string) => {
			const answer = await rawExchange(shop.url, `GET ${target} HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n`);
			const [head, body] = answer.split("\r\n\r\n");
			return { status: Number(head.split(" ")[1]), head, body: body ? JSON.parse(body) : null };
		};
		for (const target of [`${shop.url}/api/probe/list?q=a`, "http://shop.example/api/probe/list?q=a", "/api/%70robe/%6C%69st?q=a", "HTTP://shop.example/api/%70robe/%6c%69st?q=a"]) {
			const r = await ask(target);
			expect({ target, status: r.status, q: r.body?.q }).toEqual({ target, status: 200, q: "a" });
		}
		// A host that is empty is no address (RFC 9110 4.2.1).
		const noHost = await ask("http:///api/probe/list?q=a");
		expect({ status: noHost.status, type: noHost.body?.type }).toEqual({ status: 400, type: "INVALID_TARGET" });
		// An HTTP/1.1 request names exactly one Host (RFC 9112 3.2); HTTP/1.0 may leave it out.
		for (const [raw, status] of [
			["GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n", 400],
			["GET /api/health HTTP/1.1\r\nHost: a.example\r\nHOST: b.example\r\nConnection: close\r\n\r\n", 400],
			["GET /api/health HTTP/1.0\r\n\r\n", 200],
		] as const) {
			const [head, body] = (await rawExchange(shop.url, raw)).split("\r\n\r\n");
			expect({ raw, status: Number(head.split(" ")[1]) }).toEqual({ raw, status });
			expect(head).toMatch(/\r\nX-Content-Type-Options: nosniff\r\n/);
			if (status === 400) expect(JSON.parse(body)).toMatchObject({ code: 400, type: "INVALID_HOST" });
		}
		// The query is the action's: decoded once, as always.
		expect((await ask("/api/probe/%6Cist?q=%2561")).body).toEqual({ q: "%61" });
		// Rules that go by the path see it normalised: a cart's answer is never stored.
		expect((await ask("/api/%63art")).head).toMatch(/\r\nCache-Control: no-store\r\n/i);
		expect((await ask("http://shop.example/api/cart")).head).toMatch(/\r\nCache-Control: no-store\r\n/i);
	});

	test("an HTTP/1.0 client that asks for keep-alive keeps its connection: answers and refusals carry their length", async () => {
		const conn = rawConnection(shop.url, []);
		/** Sends one request and reads its whole answer, delimited by its Content-Length (none: the connection's end). */
		const ask = async (target: string) => {
			const from = conn.received().length;
			conn.socket.write(`GET ${target} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
			for (;;) {
				const got = conn.received().slice(from);
				const end = got.indexOf("\r\n\r\n");
				const length = /\r\ncontent-length: (\d+)\r\n/i.exec(got.slice(0, end))?.[1];
				if (end >= 0 && length !== undefined && Buffer.byteLength(got.slice(end + 4)) >= Number(length)) return got;
				if (conn.socket.destroyed) return got;
				await new Promise((r) => setTimeout(r, 5));
			}
		};
		try {
			const list = await ask("/api/probe/list?q=a");
			expect(list).toMatch(/^HTTP\/1\.1 200 /);
			expect(list).toMatch(/\r\nConnection: keep-alive\r\n/i);
			const missing = await ask("/api/nowhere");
			expect(missing).toMatch(/^HTTP\/1\.1 404 /);
			expect(missing).toMatch(/\r\nConnection: keep-alive\r\n/i);
			expect(missing).toContain('"code":404');
			expect(await ask("/api/health")).toMatch(/^HTTP\/1\.1 200 /);
			expect(conn.socket.destroyed).toBe(false);
		} finally {
			conn.socket.destroy();
		}
	});

	test("what Node's HTTP parser refuses is answered in the shop's error shape (JSON, nosniff), not an empty 400 or 431", async () => {
		const cases: Array<[string, number, string]> = [
			["FOO\r\n\r\n", 400, "MALFORMED_REQUEST"],
			["GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "MALFORMED_REQUEST"],
			[`GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, 431, "HEADERS_TOO_LARGE"],
		];
		for (const [raw, status, type] of cases) {
			const answer = await rawExchange(shop.url, raw);
			const [head, body] = answer.split("\r\n\r\n");
			expect({ status: Number(head.split(" ")[1]), body: JSON.parse(body) }).toMatchObject({ status, body: { code: status, type } });
			expect(head).toMatch(/\r\nContent-Type: application\/json; charset=utf-8\r\n/);
			expect(head).toMatch(/\r\nX-Content-Type-Options: nosniff\r\n/);
		}
		// The gateway goes on serving.
		expect((await shop.http.get("/api/health")).status).toBe(200);
	});

	test("404 for unknown routes and for actions without a rest alias", async () => {
		expect((await shop.http.get("/api/nope")).status).toBe(404);
		expect((await shop.http.get("/api/probe/internal")).status).toBe(404);
		expect((await shop.http.get("/api/probe.internal")).status).toBe(404);
		expect((await shop.http.get("/api/~node/actions")).status).toBe(404);
		expect((await shop.http.get("/api/$node/list")).status).toBe(404);
	});

	test("422 names the bad field", async () => {
		const res = await shop.http.post("/api/probe/echo", { name: "x", qty: 1.5 });
		expect(res.status).toBe(422);
		const fields = res.body.data.map((d: any) => d.field).sort();
		expect(fields).toEqual(["name", "qty"]);
		expect(res.body).toMatchObject({ name: "ValidationError", code: 422 });
		// Which node and action refused it stays inside.
		for (const problem of res.body.data) expect(Object.keys(problem).sort()).toEqual(expect.not.arrayContaining(["action", "nodeID"]));
	});

	test("a chunked body of no bytes is no body (as Content-Length: 0): not refused as a GET's body or for its type", async () => {
		const send = (head: string, chunks: string[]) =>
			rawExchange(shop.url, [
				`${head}\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
				...chunks.map((c) => `${Buffer.byteLength(c).toString(16)}\r\n${c}\r\n`),
				"0\r\n\r\n",
			]);
		const status = (raw: string) => Number(raw.split(" ")[1]);
		// Before: 415 (no Content-Type) and 400 BODY_NOT_ALLOWED.
		expect(status(await send("POST /api/probe/nothing HTTP/1.1", []))).toBe(200);
		expect(status(await send("GET /api/probe/list?q=ab HTTP/1.1", []))).toBe(200);
		// A chunked body with bytes is still one.
		const getBody = await send("GET /api/probe/list HTTP/1.1", ['{"q":"x"}']);
		expect({ status: status(getBody), type: /BODY_NOT_ALLOWED/.test(getBody) }).toEqual({ status: 400, type: true });
		expect(status(await send("POST /api/probe/nothing HTTP/1.1\r\nContent-Type: text/plain", ["hello"]))).toBe(415);
		expect(status(await send("POST /api/probe/echo HTTP/1.1\r\nContent-Type: application/json", ['{"name":', '"ab","qty":2}']))).toBe(200);
	});

	test("a client that asks before sending (Expect: 100-continue) a body over 1 MB gets its 413 at once, not 100 Continue", async () => {
		const ask = (length: number) =>
			new Promise<string>((resolve, reject) => {
				const socket = net.connect(Number(new URL(shop.url).port), "127.0.0.1");
				let got = "";
				socket.on("data", (d: Buffer) => {
					got += d.toString();
					// Within the limit: send the body once told to go on.
					if (got.startsWith("HTTP/1.1 100 Continue\r\n\r\n") && got.length === 25) socket.write(JSON.stringify({ name: "ab", qty: 1 }).padEnd(length));
					if (/\}(\r\n0\r\n\r\n)?$/.test(got)) socket.end();
				});
				socket.on("close", () => resolve(got));
				socket.on("error", reject);
				socket.write(`POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`);
			});
		const tooLarge = await ask(50_000_000);
		expect(tooLarge).toMatch(/^HTTP\/1\.1 413 /);
		expect(tooLarge).toMatch(/\r\nConnection: close\r\n/i);
		expect(tooLarge).toContain('"type":"PAYLOAD_TOO_LARGE"');
		const fits = await ask(100);
		expect(fits).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
	});

	test("a body over 1 MB sent without Expect gets its 413 before the rest of it is sent (declared: at once; chunked: once past the limit), and the connection closes", async () => {
		const conn = rawConnection(shop.url, [`POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n`, "x".repeat(64 * 1024)]);
		const closedAt = await within(conn.closedAt, 5000, null);
		conn.socket.destroy();
		expect(closedAt).not.toBeNull();
		expect(conn.received()).toMatch(/^HTTP\/1\.1 413 /);
		expect(conn.received()).toMatch(/\r\nConnection: close\r\n/i);
		expect(conn.received()).toContain('"type":"PAYLOAD_TOO_LARGE"');
		// Sent in chunks without a length: refused once past the limit, before the body's end.
		const chunked = rawConnection(shop.url, [`POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`, ...Array.from({ length: 20 }, () => `10000\r\n${"x".repeat(0x10000)}\r\n`)]);
		const chunkedClosed = await within(chunked.closedAt, 5000, null);
		chunked.socket.destroy();
		expect(chunkedClosed).not.toBeNull();
		expect(chunked.received()).toMatch(/^HTTP\/1\.1 413 /);
		expect(chunked.received()).toContain('"type":"PAYLOAD_TOO_LARGE"');
		// A client that sends all of it meanwhile, as fetch does, reads the 413 too.
		const big = await shop.http.request("POST", "/api/probe/echo", { raw: Buffer.alloc(20 * 1024 * 1024, 32) });
		expect(big.status).toBe(413);
		// The next request, on a new connection, is answered.
		expect((await shop.http.post("/api/probe/echo", { name: "ab", qty: 1 })).status).toBe(200);
	}, 15_000);

	test("a client that reads only once it has sent its whole body still gets the 413: the gateway reads and drops the rest before it closes", async () => {
		const body = Buffer.alloc(4 * 1024 * 1024, 32);
		const answer = await sendAllThenRead(shop.url, `POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body);
		expect({ error: answer.error, status: answer.received.slice(0, 12) }).toEqual({ error: null, status: "HTTP/1.1 413" });
	});

	test("a chunked body over 1 MB that the parser refuses unread (a charset it does not take) gets its 415, its connection closes past the limit, and the gateway goes on", async () => {
		// Kept alive: Node reads the rest of the body after the answer, past the limit.
		const conn = rawConnection(shop.url, [
			`POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=latin1\r\nTransfer-Encoding: chunked\r\n\r\n`,
			...Array.from({ length: 20 }, () => `10000\r\n${"x".repeat(0x10000)}\r\n`),
			"0\r\n\r\n",
		]);
		try {
			await waitFor(async () => conn.received(), (r: string) => r.includes("\r\n\r\n"), 5000, 20);
			expect(conn.received()).toMatch(/^HTTP\/1\.1 415 /);
			// Past the limit, what Node would go on reading and dropping is cut off: the connection closes.
			expect(await within(conn.closedAt.then(() => "closed"), 5000, "open")).toBe("closed");
			expect((await shop.http.post("/api/probe/echo", { name: "ab", qty: 1 })).status).toBe(200);
		} finally {
			conn.socket.destroy();
		}
	});

	test("a request sent after a refused body on the same connection is not run: the 413's Connection: close makes it the last answer", async () => {
		const body = "x".repeat(BODY_OVER_LIMIT);
		const before = probeCounted;
		const answer = await rawExchange(shop.url, `POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}POST /api/probe/count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
		expect(answer).toMatch(/^HTTP\/1\.1 413 /);
		expect(answer.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
		expect(probeCounted).toBe(before);
		// On a connection of its own it runs.
		expect((await shop.http.post("/api/probe/count", {})).body.count).toBe(before + 1);
	});

	test("a client that sends Expect: 100-continue and then its body without waiting still reads the 413", async () => {
		const head = `POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n`;
		const answer = await sendAllThenRead(shop.url, head, Buffer.alloc(4 * 1024 * 1024, 32));
		expect({ error: answer.error, status: answer.received.slice(0, 12) }).toEqual({ error: null, status: "HTTP/1.1 413" });
	});

	test("400 on malformed JSON, 413 above 1 MB", async () => {
		const bad = await shop.http.request("POST", "/api/probe/echo", { raw: '{"name": "ab", ' });
		expect(bad.status).toBe(400);
		expect(bad.body.code).toBe(400);
		const big = await shop.http.request("POST", "/api/probe/echo", { raw: JSON.stringify({ name: "x".repeat(2 * 1024 * 1024), qty: 1 }) });
		expect(big.status).toBe(413);
	});

	test("the gateway's own refusals (body and query checks) carry the CORS headers a browser storefront needs to read them", async () => {
		const origin = { origin: "https://shop.example" };
		const refusals = {
			malformedJson: await shop.http.request("POST", "/api/probe/echo", { raw: "{", headers: origin }),
			notAnObject: await shop.http.request("POST", "/api/probe/echo", { raw: "42", headers: origin }),
			repeatedQuery: await shop.http.get("/api/probe/list?q=a&q=b", { headers: origin }),
			tooLarge: await shop.http.request("POST", "/api/probe/echo", { raw: JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }), headers: origin }),
			notJson: await shop.http.request("POST", "/api/probe/echo", { raw: "name=ab", headers: { ...origin, "content-type": "application/x-www-form-urlencoded" } }),
		};
		for (const [what, res] of Object.entries(refusals)) {
			expect({ what, status: res.status, allow: res.headers.get("access-control-allow-origin"), expose: res.headers.get("access-control-expose-headers") }).toEqual({
				what,
				status: expect.any(Number),
				allow: "*",
				expose: "X-Cart-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, Location, X-Request-ID, ETag",
			});
		}
		expect(Object.values(refusals).map((r) => r.status)).toEqual([400, 400, 400, 413, 415]);
	});

	test("a password or token in the query string is refused naming it, and masked in the request log", async () => {
		const api = shop.broker.getLocalService("api") as unknown as { logger: { info: (...args: unknown[]) => void } };
		const logged = jest.spyOn(api.logger, "info");
		for (const [query, field] of [["password=hunter2", "password"], ["q=a&refreshToken=r3fr3sh", "refreshToken"]]) {
			const res = await shop.http.get(`/api/probe/list?${query}`);
			expect({ query, status: res.status, body: res.body }).toMatchObject({ query, status: 400, body: { type: "INVALID_QUERY", data: [{ field }] } });
		}
		const lines = logged.mock.calls.map((args) => args.map(String).join(" "));
		logged.mockRestore();
		expect(lines.filter((l) => l.includes("/api/probe/list?"))).toEqual(expect.arrayContaining([expect.stringContaining("password=***"), expect.stringContaining("refreshToken=***")]));
		expect(lines.join("\n")).not.toMatch(/hunter2|r3fr3sh/);
	});

	test("each request's log lines carry the request id its client got; a refusal or failure has its answer line too", async () => {
		const api = shop.broker.getLocalService("api") as unknown as { logger: Record<"info" | "error", (...args: unknown[]) => void> };
		const info = jest.spyOn(api.logger, "info");
		const error = jest.spyOn(api.logger, "error").mockImplementation(() => undefined);
		const answers = [await shop.http.get("/api/probe/list?q=a"), await shop.http.get("/api/probe/me"), await shop.http.get("/api/probe/crash")];
		const lines = info.mock.calls.map((args) => args.map(String).join(" "));
		const errors = error.mock.calls.map((args) => String(args[0]));
		info.mockRestore();
		error.mockRestore();
		const [ok, refused, crashed] = answers.map((a) => a.headers.get("x-request-id"));
		expect([ok, refused, crashed].every((id) => typeof id === "string" && id.length > 8)).toBe(true);
		const of = (id: string | null) => lines.filter((l) => l.includes(`[${id}]`));
		expect(of(ok)).toEqual([expect.stringMatching(/^=> GET \/api\/probe\/list\?q=a /), expect.stringMatching(/^<= 200 GET \/api\/probe\/list\?q=a .* ms$/)]);
		expect(of(refused)).toEqual([expect.stringMatching(/^=> GET \/api\/probe\/me /), expect.stringMatching(/^<= 401 NO_TOKEN GET \/api\/probe\/me /)]);
		expect(of(crashed)).toEqual([expect.stringMatching(/^=> GET \/api\/probe\/crash /), expect.stringMatching(/^<= 500 INTERNAL_ERROR GET \/api\/probe\/crash /)]);
		expect(errors).toEqual([expect.stringContaining(`GET /api/probe/crash [${crashed}] failed`)]);
	});

	test("a proxy's request id (a UUID, or hex as nginx's) is kept; another is replaced by the gateway's own", async () => {
		const idOf = async (headers: Record<string, string>) => (await shop.http.request("GET", "/api/probe/list", { headers })).headers.get("x-request-id");
		const uuid = "7112156f-0c6e-4b8e-9a51-2f3d4c5b6a79";
		expect(await idOf({ "x-request-id": uuid })).toBe(uuid);
		expect(await idOf({ "x-request-id": "0123456789abcdef0123456789abcdef" })).toBe("0123456789abcdef0123456789abcdef");
		// In lower case (Zipkin refuses an upper-case trace id); 16 to 32 hex digits (the trace id is their first 16).
		expect(await idOf({ "x-correlation-id": uuid.toUpperCase() })).toBe(uuid);
		expect(await idOf({ "x-request-id": "0123456789ABCDEF" })).toBe("0123456789abcdef");
		for (const forged of ["ingress-abc-123", "corr1", "<script>", "a".repeat(33), "0123456789abcde", `${uuid}\t`]) {
			const id = await idOf({ "x-request-id": forged, "x-correlation-id": forged });
			expect({ forged, id }).toEqual({ forged, id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/) });
		}
	});

	test("400 naming the field for a query parameter given twice or with brackets", async () => {
		for (const query of ["q[$ne]=x", "q[]=a", "q=a&q=b"]) {
			const res = await shop.http.get(`/api/probe/list?${query}`);
			expect(res.status).toBe(400);
			expect(res.body).toMatchObject({ code: 400, type: "INVALID_QUERY", data: [{ field: "q" }] });
		}
		expect(await shop.http.get("/api/probe/list?q=a")).toMatchObject({ status: 200, body: { q: "a" } });
	});

	test("a query value left blank (an empty box of a GET form) is not given; a JSON body's empty string stays", async () => {
		for (const query of ["q=", "q=%20%20", "q=+"]) {
			const res = await shop.http.get(`/api/probe/list?${query}`);
			expect({ query, status: res.status, body: res.body }).toEqual({ query, status: 200, body: {} });
		}
		// It no longer hides the body's value either (moleculer-web lets the query win over the body).
		expect(await shop.http.request("POST", "/api/probe/echo?qty=", { body: { name: "ab", qty: 2 } })).toMatchObject({ status: 200, body: { name: "ab", qty: 2 } });
		const blankName = await shop.http.post("/api/probe/echo", { name: "", qty: 1 });
		expect(blankName.status).toBe(422);
		expect(blankName.body.data.map((d: any) => d.field)).toEqual(["name"]);
	});

	test("400 for a body that is not an object, nests too deep, names a property __proto__ or holds half a surrogate pair; the process stays up", async () => {
		for (const raw of ["[1,2]", "42", '"x"']) {
			expect((await shop.http.request("POST", "/api/probe/echo", { raw })).body).toMatchObject({ code: 400, type: "INVALID_BODY" });
		}
		// What clients send for "no body" (a nil map, an empty array) is taken as none.
		for (const raw of ["null", "[]"]) expect((await shop.http.request("POST", "/api/probe/nothing", { raw })).status).toBe(200);
		// Thousands of levels overflowed the stack when the validation error echoing them was written out.
		const deepObject = (levels: number) => `{"name":${'{"a":'.repeat(levels)}1${"}".repeat(levels)},"qty":1}`;
		const deepArray = (levels: number) => `{"name":${"[".repeat(levels)}${"]".repeat(levels)},"qty":1}`;
		for (const raw of [deepObject(1000), deepArray(1000)]) {
			const res = await shop.http.request("POST", "/api/probe/echo", { raw });
			expect(res.status).toBe(400);
			expect(res.body).toMatchObject({ type: "INVALID_BODY", data: [{ field: expect.stringMatching(/^name/) }] });
		}
		// Deeper still, they are more items than any body holds, refused before they are parsed.
		for (const raw of [deepObject(5000), deepArray(10000)]) {
			expect((await shop.http.request("POST", "/api/probe/echo", { raw })).body).toMatchObject({ code: 400, type: "INVALID_BODY", message: `The body holds more than ${MAX_BODY_ITEMS} properties and array elements` });
		}
		const proto = await shop.http.request("POST", "/api/probe/echo", { raw: '{"__proto__":{"name":"ab","qty":1}}' });
		expect(proto.body).toMatchObject({ code: 400, type: "INVALID_BODY", data: [{ field: "__proto__" }] });
		// Half a surrogate pair is no character: stored, it would be served back as text strict clients refuse.
		const lone = await shop.http.request("POST", "/api/probe/echo", { raw: '{"name":"ab\\ud800","qty":1}' });
		expect(lone.body).toMatchObject({ code: 400, type: "INVALID_BODY", data: [{ field: "name" }] });
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: '{"name":"ab\\ud83d\\ude00","qty":1}' })).status).toBe(200);
		// Bytes that are not UTF-8 would be stored as U+FFFD.
		const notUtf8 = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('","qty":1}')]);
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: notUtf8 })).body).toMatchObject({ code: 400, type: "INVALID_BODY", message: "The body is not valid UTF-8" });
		expect((await shop.http.get("/api/health")).status).toBe(200);
	});

	test("400 for a body of more properties and array elements than any shop body holds, also compressed, counted outside strings", async () => {
		const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 1]));
		// 90,000 properties fit in the size limit and held the gateway's thread for 0.2 s each.
		const many = JSON.stringify({ name: "ab", qty: 1, ...keys(90_000) });
		const refused = { code: 400, type: "INVALID_BODY", message: `The body holds more than ${MAX_BODY_ITEMS} properties and array elements` };
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: many })).body).toMatchObject(refused);
		expect((await shop.http.request("POST", "/api/no-such-route", { raw: many })).body).toMatchObject(refused);
		const gzipped = zlib.gzipSync(many);
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: gzipped, headers: { "content-type": "application/json", "content-encoding": "gzip" } })).body).toMatchObject(refused);
		// At the limit it is read, and commas, brackets and escaped quotes inside strings are text, not items.
		const atLimit = JSON.stringify({ name: "ab", qty: 1, list: Array(MAX_BODY_ITEMS - 3).fill(0) });
		const read = await shop.http.request("POST", "/api/probe/echo", { raw: atLimit });
		expect(read.status).toBe(200);
		expect(read.body.list).toHaveLength(MAX_BODY_ITEMS - 3);
		const punctuated = JSON.stringify({ name: `a${',[{"\\'.repeat(3000)}b`.slice(0, 8), qty: 1, note: ',[{\\",'.repeat(2000) });
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: punctuated })).status).toBe(200);
	});

	test("every error answer has each key of the contract's shape, data null when there is nothing to add", async () => {
		const noToken = await shop.http.get("/api/probe/me");
		expect(noToken.body).toEqual({ name: "UnauthorizedError", message: expect.any(String), code: 401, type: "NO_TOKEN", data: null });
		const badJson = await shop.http.request("POST", "/api/probe/echo", { raw: "{" });
		expect(Object.keys(badJson.body).sort()).toEqual(["code", "data", "message", "name", "type"]);
		expect(badJson.body).toMatchObject({ code: 400, type: "INVALID_JSON", data: null });
		expect((await shop.http.post("/api/probe/echo", { name: "a", qty: 1 })).body.data).toEqual([expect.objectContaining({ field: "name" })]);
	});

	test("a refused value is echoed back only when it is a plain one", async () => {
		const res = await shop.http.post("/api/probe/echo", { name: { a: { b: 1 } }, qty: "many" });
		expect(res.status).toBe(422);
		const byField = Object.fromEntries(res.body.data.map((d: any) => [d.field, d]));
		expect(byField.name).not.toHaveProperty("actual");
		expect(byField.qty).toMatchObject({ actual: "many" });
	});

	test("400 on a compressed body that does not inflate, 415 on an unknown encoding or a body that is not JSON; a good gzip body is read", async () => {
		const send = (raw: string | Buffer, encoding: string) => shop.http.request("POST", "/api/probe/echo", { raw, headers: { "content-type": "application/json", "content-encoding": encoding } });
		const body = JSON.stringify({ name: "ab", qty: 1 });
		for (const [raw, encoding] of [["notgzip", "gzip"], [body, "br"], [body, "deflate"]] as const) {
			const res = await send(raw, encoding);
			expect(res.status).toBe(400);
			expect(res.body).toMatchObject({ code: 400, type: "INVALID_BODY" });
		}
		const unknown = await send(body, "compress-of-my-own");
		expect(unknown.status).toBe(415);
		expect(unknown.body).toMatchObject({ code: 415, type: "UNSUPPORTED_MEDIA_TYPE" });
		for (const type of ["text/plain", "application/x-www-form-urlencoded", "application/xml"]) {
			const other = await shop.http.request("POST", "/api/probe/echo", { raw: body, headers: { "content-type": type } });
			expect(other.status).toBe(415);
			expect(other.body.message).toMatch(/JSON/);
		}
		expect((await shop.http.request("POST", "/api/probe/echo", { raw: body, headers: { "content-type": "application/merge-patch+json" } })).status).toBe(200);
		const charset = await shop.http.request("POST", "/api/probe/echo", { raw: body, headers: { "content-type": "application/json; charset=klingon" } });
		expect(charset.status).toBe(415);
		// Unicode in another encoding than UTF-8 is one the shop does not read either (body-parser would take it, then call it malformed).
		for (const [charset, bytes] of [["utf-16", Buffer.from(`\uFEFF${body}`, "utf16le")], ["UTF-16LE", Buffer.from(body, "utf16le")], ['"utf-32"', Buffer.from(body)]] as const) {
			const res = await shop.http.request("POST", "/api/probe/echo", { raw: bytes, headers: { "content-type": `application/json; charset=${charset}` } });
			expect({ charset, status: res.status, type: res.body.type }).toEqual({ charset, status: 415, type: "UNSUPPORTED_MEDIA_TYPE" });
		}
		for (const charset of ["utf-8", "UTF-8", '"utf-8"']) {
			expect((await shop.http.request("POST", "/api/probe/echo", { raw: body, headers: { "content-type": `application/json; charset=${charset}` } })).status).toBe(200);
		}
		expect((await send(zlib.gzipSync(body), "gzip")).status).toBe(200);
	});

	test("500 hides internals", async () => {
		const res = await shop.http.get("/api/probe/crash");
		expect(res.status).toBe(500);
		expect(res.text).not.toMatch(/secret|\/srv|stack/);
	});

	test("429 past the auth rate limit, with Retry-After", async () => {
		const statuses: number[] = [];
		for (let i = 0; i < 3; i++) statuses.push((await shop.http.post("/api/auth/probe-out", {})).status);
		for (let i = 0; i < 4; i++) statuses.push((await shop.http.post("/api/auth/probe", {})).status);
		expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
		expect(statuses[5]).toBe(429);
		const res = await shop.http.post("/api/auth/probe", {});
		expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
		// the general bucket is separate
		expect((await shop.http.post("/api/probe/echo", { name: "ab", qty: 1 })).status).toBe(200);
	});

	test("the OpenAPI document validates and lists every alias", async () => {
		const res = await shop.http.get("/api/openapi.json");
		expect(res.status).toBe(200);
		await SwaggerParser.validate(structuredClone(res.body));
		const paths = res.body.paths;
		expect(paths["/api/probe/echo"].post.requestBody.content["application/json"].schema.required).toEqual(["name", "qty"]);
		expect(paths["/api/probe/admin"].get.security).toEqual([{ bearerAuth: [] }]);
		for (const p of ["/api/health", "/api/openapi.json", "/api/probe/me", "/api/auth/probe", "/api/payments/webhook"]) expect(paths[p]).toBeDefined();
	});
});

describe("gateway with CORS_ORIGINS a list", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { cors: { origin: ["https://a.example", "https://b.example", "https://*.shops.example"] } } });
	});
	afterAll(() => shop.stop());
	// JSON answers vary by Accept-Encoding too (the gateway compresses them); errors and preflights only by Origin.
	const cors = (res: { status: number; headers: Headers }) => ({ status: res.status, allow: res.headers.get("access-control-allow-origin"), vary: res.headers.get("vary") });

	test("a listed origin gets the CORS headers; any other, and none, get the answer without them (the browser enforces), never a 403", async () => {
		expect(cors(await shop.http.get("/api/probe/list", { headers: { origin: "https://b.example" } }))).toEqual({ status: 200, allow: "https://b.example", vary: "Origin, Accept-Encoding" });
		// Before: 403 ORIGIN_NOT_ALLOWED, also for the shop's own origin, which browsers send on a same-origin POST.
		expect(cors(await shop.http.get("/api/probe/list", { headers: { origin: "https://evil.example" } }))).toEqual({ status: 200, allow: null, vary: "Origin, Accept-Encoding" });
		const sameOrigin = await shop.http.post("/api/probe/echo", { name: "ab", qty: 1 }, { headers: { origin: shop.url } });
		expect({ ...cors(sameOrigin), body: sameOrigin.body }).toEqual({ status: 200, allow: null, vary: "Origin, Accept-Encoding", body: { name: "ab", qty: 1 } });
		// The whole origin, not a part of an entry (before: https://a.exampl and "a" were allowed); `*` in an entry matches any part.
		for (const origin of ["https://a.exampl", "a", "https://a.example.evil", "http://a.example", "https://shops.example", "https://x.shops.example.evil"]) {
			expect({ origin, ...cors(await shop.http.get("/api/probe/list", { headers: { origin } })) }).toEqual({ origin, status: 200, allow: null, vary: "Origin, Accept-Encoding" });
		}
		expect(cors(await shop.http.get("/api/probe/list", { headers: { origin: "https://x.shops.example" } }))).toEqual({ status: 200, allow: "https://x.shops.example", vary: "Origin, Accept-Encoding" });
		expect(cors(await shop.http.get("/api/probe/list", { headers: { origin: "HTTPS://A.EXAMPLE" } })).allow).toBe("HTTPS://A.EXAMPLE");
		// Without Origin (a server, an app): the same answer, and a cache keeps it apart from the browsers' copies.
		expect(cors(await shop.http.get("/api/probe/list"))).toEqual({ status: 200, allow: null, vary: "Origin, Accept-Encoding" });
		expect(cors(await shop.http.get("/api/probe/me", { headers: { origin: "https://evil.example" } }))).toEqual({ status: 401, allow: null, vary: "Origin" });
	});

	test("a preflight from an origin not listed gets no CORS headers, so the browser sends nothing", async () => {
		const preflight = await shop.http.request("OPTIONS", "/api/probe/echo", { headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
		expect({ ...cors(preflight), methods: preflight.headers.get("access-control-allow-methods") }).toEqual({ status: 204, allow: null, vary: "Origin", methods: null });
		const listed = await shop.http.request("OPTIONS", "/api/probe/echo", { headers: { origin: "https://a.example", "access-control-request-method": "POST" } });
		expect(cors(listed)).toEqual({ status: 204, allow: "https://a.example", vary: "Origin" });
	});
});

describe("gateway general rate limit", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { shopRateLimit: { windowMs: 60_000, general: 3, auth: 100 } } });
	});
	afterAll(() => shop.stop());

	test("429 after RATE_LIMIT requests per minute", async () => {
		const statuses = [];
		for (let i = 0; i < 4; i++) statuses.push((await shop.http.post("/api/probe/echo", { name: "ab", qty: 1 })).status);
		expect(statuses).toEqual([200, 200, 200, 429]);
	});
});

// Chains as nginx ($proxy_add_x_forwarded_for) or an AWS ALB pass them on: the client's own header, then what the proxy appended.
describe.each([
	["1", "one proxy: the entry it appended", 200],
	["false", "no proxy: the header is ignored", 429],
])("gateway with TRUST_PROXY=%s (%s)", (trustProxy, _what, otherClientStatus) => {
	let shop: Shop;
	let restoreEnv: () => void;
	beforeAll(async () => {
		// Read when the gateway is created.
		restoreEnv = setEnv({ TRUST_PROXY: trustProxy });
		shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { shopRateLimit: { windowMs: 60_000, general: 1000, auth: 5 } } });
	});
	afterAll(async () => {
		await shop.stop();
		restoreEnv();
	});

	test("a made-up leftmost X-Forwarded-For entry does not dodge the auth limit", async () => {
		const statuses: number[] = [];
		for (let i = 1; i <= 25; i++) statuses.push((await shop.http.post("/api/auth/probe", {}, { headers: { "X-Forwarded-For": `203.0.113.${i}, 127.0.0.1` } })).status);
		expect(statuses).toEqual([...Array(5).fill(200), ...Array(20).fill(429)]);
		// Another client, as the proxy saw it.
		expect((await shop.http.post("/api/auth/probe", {}, { headers: { "X-Forwarded-For": "198.51.100.2" } })).status).toBe(otherClientStatus);
	});
});

describe("gateway with the users service", () => {
	let shop: Shop;
	let restoreEnv: () => void;
	// One proxy in front: each test is its own client (its own auth bucket and login throttle), as the proxy reports it.
	let clients = 0;
	const newClient = (): RequestOptions => ({ headers: { "X-Forwarded-For": `198.51.100.${++clients}` } });
	const newEmail = () => `gw-${Date.now().toString(36)}-${++clients}@example.com`;
	const PASSWORD = "velvet-otter-42";
	const sidOf = (accessToken: string) => (jwt.decode(accessToken) as { sid: string }).sid;

	async function register(client: RequestOptions, email = newEmail()) {
		const res = await shop.http.post("/api/auth/register", { email, password: PASSWORD }, client);
		expect(res.status).toBe(201);
		return { email, ...(res.body as { user: { id: string; role: "customer" }; accessToken: string; refreshToken: string }) };
	}

	beforeAll(async () => {
		restoreEnv = setEnv({ TRUST_PROXY: "1" });
		shop = await startShop({ services: ["users"], apiSettings: { shopRateLimit: { windowMs: 60_000, general: 1000, auth: 5 } } });
	});
	afterAll(async () => {
		await shop.stop();
		restoreEnv();
	});

	test("25 wrong logins, each with a made-up leftmost X-Forwarded-For entry: 429 after the fifth", async () => {
		const email = newEmail();
		const statuses: number[] = [];
		for (let i = 1; i <= 25; i++) {
			statuses.push((await shop.http.post("/api/auth/login", { email, password: `wrong-guess-${i}` }, { headers: { "X-Forwarded-For": `203.0.113.${i}, 127.0.0.1` } })).status);
		}
		expect(statuses).toEqual([...Array(5).fill(401), ...Array(20).fill(429)]);
	});

	test("a token signed with the secret but naming another user, or admin, on one's own session: 401 INVALID_TOKEN", async () => {
		const alice = await register(newClient());
		const mallory = await register(newClient());
		expect((await shop.http.get("/api/me", { token: mallory.accessToken })).status).toBe(200);
		const asAdmin = signAccessToken({ sub: mallory.user.id, role: "admin", sid: sidOf(mallory.accessToken) });
		const asAlice = signAccessToken({ sub: alice.user.id, role: "customer", sid: sidOf(mallory.accessToken) });
		for (const forged of [asAdmin, asAlice]) {
			const res = await shop.http.get("/api/me", { token: forged });
			expect(res.status).toBe(401);
			expect(res.body.type).toBe("INVALID_TOKEN");
		}
		expect((await shop.http.get("/api/me", { token: alice.accessToken })).body.id).toBe(alice.user.id);
	});

	test("login, refresh and password reset work with a stale or garbage Bearer header; logout takes an expired token of its session", async () => {
		const client = newClient();
		const account = await register(client);
		const expired = expiredToken({ sub: account.user.id, role: "customer", sid: sidOf(account.accessToken) });
		const withToken = (authorization: string): RequestOptions => ({ headers: { ...client.headers, authorization } });

		const refreshed = await shop.http.post("/api/auth/refresh", { refreshToken: account.refreshToken }, withToken(`Bearer ${expired}`));
		expect(refreshed.status).toBe(200);
		expect((await shop.http.get("/api/me", { token: refreshed.body.accessToken })).status).toBe(200);
		expect((await shop.http.post("/api/auth/login", { email: account.email, password: PASSWORD }, withToken("Bearer garbage"))).status).toBe(200);
		expect((await shop.http.post("/api/auth/password-reset", { email: account.email }, withToken(`Bearer ${expired}`))).status).toBe(202);

		// The access token of a session that has ended (logged out) does not stand in the way of logging in again.
		const other = newClient();
		const ended = await register(other);
		expect((await shop.http.post("/api/auth/logout", {}, { ...other, token: ended.accessToken })).status).toBe(204);
		expect((await shop.http.post("/api/auth/login", { email: ended.email, password: PASSWORD }, { headers: { ...other.headers, authorization: `Bearer ${ended.accessToken}` } })).status).toBe(200);

		// Signing out with the session's expired token ends that session.
		// (Its refresh token then answers 401: users.spec.ts; this shop's auth routes have little of their rate limit left.)
		expect((await shop.http.post("/api/auth/logout", {}, withToken(`Bearer ${expired}`))).status).toBe(204);
	});

	test("answers of /api/auth/* and /api/me* are no-store, success or error; all are nosniff", async () => {
		const client = newClient();
		const email = newEmail();
		const registered = await shop.http.post("/api/auth/register", { email, password: PASSWORD }, client);
		const responses = {
			registered,
			login: await shop.http.post("/api/auth/login", { email, password: PASSWORD }, client),
			wrongLogin: await shop.http.post("/api/auth/login", { email, password: "not-it" }, client),
			me: await shop.http.get("/api/me", { token: registered.body.accessToken }),
			meWithoutToken: await shop.http.get("/api/me"),
			addresses: await shop.http.get("/api/me/addresses", { token: registered.body.accessToken }),
		};
		for (const [what, res] of Object.entries(responses)) {
			expect({ what, status: res.status < 500, nosniff: res.headers.get("x-content-type-options"), cache: res.headers.get("cache-control") }).toEqual({ what, status: true, nosniff: "nosniff", cache: "no-store" });
		}
		expect(responses.me.status).toBe(200);
		expect(responses.login.status).toBe(200);
	});
});

describe("gateway with the catalog, search, reviews, cart and orders", () => {
	let shop: Shop;
	const admin = fakeToken("gw-admin", "admin");
	const customer = fakeToken("gw-customer");
	let category: { id: string; slug: string };
	let cheap: { id: string; variants: Array<{ id: string }> };
	let dear: { id: string };

	beforeAll(async () => {
		shop = await startShop({ services: [FakeSessions, "products", "search", "reviews", "cart", "orders"] });
		category = (await shop.http.post("/api/categories", { name: "Blank Box Mugs" }, { token: admin })).body;
		const product = async (name: string, price: number, sku: string) => {
			const res = await shop.http.post("/api/products", { name, price, currency: "USD", categoryId: category.id, variants: [{ sku, name: "One", stock: 5, options: {} }] }, { token: admin });
			expect(res.status).toBe(201);
			return res.body;
		};
		cheap = await product("Blankbox Mug Small", 1_200, `BB-S-${process.pid}`);
		dear = await product("Blankbox Mug Large", 3_400, `BB-L-${process.pid}`);
		const review = await shop.http.post(`/api/products/${cheap.id}/reviews`, { rating: 5, title: "Holds tea" }, { token: customer });
		expect(review.status).toBe(201);
		expect((await shop.http.patch(`/api/reviews/${review.body.id}/moderation`, { approved: true }, { token: admin })).status).toBe(200);
		await waitFor(() => shop.http.get("/api/search?q=blankbox"), (r) => r.body?.total === 2);
	});
	afterAll(() => shop.stop());

	test("an empty query value means not given: products, search and a review list answer as without it", async () => {
		const cases: Array<[string, string, number]> = [
			// [with blank values, the same without them, rows expected]
			[`/api/products?category=${category.slug}&maxPrice=`, `/api/products?category=${category.slug}`, 2],
			[`/api/products?category=${category.slug}&minPrice=&maxPrice=&page=&pageSize=&sort=`, `/api/products?category=${category.slug}`, 2],
			["/api/search?q=blankbox&maxPrice=", "/api/search?q=blankbox", 2],
			["/api/search?q=blankbox&minPrice=&maxPrice=&minRating=&inStock=&page=&pageSize=&sort=&category=", "/api/search?q=blankbox", 2],
			[`/api/products/${cheap.id}/reviews?page=&pageSize=&sort=`, `/api/products/${cheap.id}/reviews`, 1],
		];
		for (const [blank, plain, rows] of cases) {
			const [withBlanks, without] = await Promise.all([shop.http.get(blank), shop.http.get(plain)]);
			expect({ blank, status: withBlanks.status, total: withBlanks.body.total, page: withBlanks.body.page }).toEqual({ blank, status: 200, total: rows, page: 1 });
			expect(withBlanks.body.rows).toEqual(without.body.rows);
		}
		// A value given is still read, and a bad one still refused naming the field.
		expect((await shop.http.get("/api/search?q=blankbox&maxPrice=2000")).body.rows.map((r: any) => r.id)).toEqual([cheap.id]);
		expect((await shop.http.get(`/api/products?category=${category.slug}&maxPrice=2000`)).body.rows.map((r: any) => r.id)).toEqual([cheap.id]);
		const bad = await shop.http.get("/api/search?q=blankbox&maxPrice=abc");
		expect(bad.status).toBe(422);
		expect(bad.body.data.map((d: any) => d.field)).toEqual(["maxPrice"]);
		expect(dear.id).not.toBe(cheap.id);
	});

	test("a GET with a body is refused: it cannot set what the URL does not show, and so not what the response cache gives every guest", async () => {
		const url = `/api/products?category=${category.slug}&pageSize=7`;
		const body = JSON.stringify({ minPrice: 1_000_000_000 });
		const withBody = await new Promise<{ status: number; body: any }>((resolve, reject) => {
			const req = http.request(`${shop.url}${url}`, { method: "GET", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
				let text = "";
				res.on("data", (d) => (text += d));
				res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
			});
			req.on("error", reject);
			req.end(body);
		});
		expect(withBody).toMatchObject({ status: 400, body: { code: 400, type: "BODY_NOT_ALLOWED", message: expect.stringContaining("query string") } });
		const guest = await shop.http.get(url);
		expect({ status: guest.status, total: guest.body.total, pageSize: guest.body.pageSize }).toEqual({ status: 200, total: 2, pageSize: 7 });
	});

	test("carts (a guest's too), orders and admin or signed-in answers are no-store; public catalog answers are as they were", async () => {
		const guest = await shop.http.get("/api/cart");
		expect(guest.status).toBe(200);
		const cartId = guest.headers.get("x-cart-id")!;
		expect(cartId).toBeTruthy();
		const asGuest = { headers: { "X-Cart-Id": cartId } };
		const personal = {
			newGuestCart: guest,
			guestCart: await shop.http.get("/api/cart", asGuest),
			headGuestCart: await fetch(`${shop.url}/api/cart`, { method: "HEAD", headers: { "X-Cart-Id": cartId } }),
			customerCart: await shop.http.get("/api/cart", { token: customer }),
			orders: await shop.http.get("/api/orders", { token: customer }),
			ordersPage: await shop.http.get("/api/orders?page=1", { token: customer }),
			ordersWithoutToken: await shop.http.get("/api/orders"),
			order: await shop.http.get("/api/orders/no-such-order", { token: customer }),
			moderationQueue: await shop.http.get("/api/reviews?status=approved", { token: admin }),
			promotions: await shop.http.get("/api/promotions", { token: admin }),
			inventory: await shop.http.get("/api/inventory/no-such-variant/history", { token: admin }),
			// Optional-user routes, answered to a signed-in user: an admin sees archived products, an author a pending review.
			productForAdmin: await shop.http.get(`/api/products/${cheap.id}`, { token: admin }),
			reviewForAuthor: await shop.http.get(`/api/reviews/${(await shop.http.get(`/api/products/${cheap.id}/reviews`)).body.rows[0].id}`, { token: customer }),
		};
		for (const [what, res] of Object.entries(personal)) {
			expect({ what, status: res.status < 500, cache: res.headers.get("cache-control") }).toEqual({ what, status: true, cache: "no-store" });
		}
		expect(personal.orders.status).toBe(200);
		expect(personal.moderationQueue.status).toBe(200);

		const reviewId = (await shop.http.get(`/api/products/${cheap.id}/reviews`)).body.rows[0].id;
		const publicAnswers = {
			products: await shop.http.get("/api/products"),
			productsTwice: await shop.http.get("/api/products"), // from the gateway's response cache
			product: await shop.http.get(`/api/products/${cheap.id}`),
			categories: await shop.http.get("/api/categories"),
			search: await shop.http.get("/api/search?q=blankbox"),
			autocomplete: await shop.http.get("/api/search/autocomplete?q=blank"),
			reviews: await shop.http.get(`/api/products/${cheap.id}/reviews`),
			rating: await shop.http.get(`/api/products/${cheap.id}/rating`),
			review: await shop.http.get(`/api/reviews/${reviewId}`),
			health: await shop.http.get("/api/health"),
			// A public list asked with a token: the route reads no user, so the answer is everyone's.
			productsWithToken: await shop.http.get("/api/products", { token: customer }),
		};
		for (const [what, res] of Object.entries(publicAnswers)) {
			expect({ what, status: res.status, cache: res.headers.get("cache-control") }).toEqual({ what, status: 200, cache: null });
		}
	});

	test("a GET's 200 carries an ETag; asked again with If-None-Match it is a 304 without a body, until the answer changes", async () => {
		const list = `/api/products?category=${category.slug}`;
		const first = await shop.http.get(list);
		const tag = first.headers.get("etag")!;
		expect(tag).toMatch(/^W\/"[0-9a-f]+-[\w-]+"$/);
		// Again: from the gateway's response cache now, with the same tag.
		const again = await shop.http.get(list, { headers: { "if-none-match": tag } });
		expect({ status: again.status, text: again.text, etag: again.headers.get("etag"), type: again.headers.get("content-type") }).toEqual({ status: 304, text: "", etag: tag, type: null });
		expect((await shop.http.request("HEAD", list, { headers: { "if-none-match": `"x", ${tag}` } })).status).toBe(304);
		// A HEAD answered from the response cache carries the GET's length too.
		expect((await shop.http.request("HEAD", list)).headers.get("content-length")).toBe(first.headers.get("content-length"));
		// A browser storefront's script may send it across origins, and read the tag.
		const preflight = await shop.http.request("OPTIONS", list, { headers: { origin: "https://shop.example", "access-control-request-method": "GET", "access-control-request-headers": "if-none-match" } });
		expect(preflight.headers.get("access-control-allow-headers")).toMatch(/\bIf-None-Match\b/);
		expect((await shop.http.get(list, { headers: { origin: "https://shop.example" } })).headers.get("access-control-expose-headers")).toMatch(/\bETag$/);
		// Another tag: the whole answer.
		const other = await shop.http.get(list, { headers: { "if-none-match": 'W/"other"' } });
		expect({ status: other.status, rows: other.body.rows.length, etag: other.headers.get("etag") }).toEqual({ status: 200, rows: 2, etag: tag });

		// An answer the response cache does not keep (a product page asked with a token; a customer's cart).
		const page = await shop.http.get(`/api/products/${cheap.id}`, { token: customer });
		const pageTag = page.headers.get("etag")!;
		expect((await shop.http.get(`/api/products/${cheap.id}`, { token: customer, headers: { "if-none-match": pageTag } })).status).toBe(304);
		const cart = await shop.http.get("/api/cart", { token: customer });
		const revalidated = await shop.http.get("/api/cart", { token: customer, headers: { "if-none-match": cart.headers.get("etag")! } });
		expect({ status: revalidated.status, cache: revalidated.headers.get("cache-control") }).toEqual({ status: 304, cache: "no-store" });

		// The answer changed: a new tag, and the old one gets the whole answer.
		expect((await shop.http.patch(`/api/products/${cheap.id}`, { name: "Blankbox Mug Small, glazed" }, { token: admin })).status).toBe(200);
		const changed = await waitFor(() => shop.http.get(list, { headers: { "if-none-match": tag } }), (r) => r.status === 200);
		expect(changed.headers.get("etag")).not.toBe(tag);
		expect(changed.body.rows.map((r: any) => r.name)).toContain("Blankbox Mug Small, glazed");
		expect((await shop.http.patch(`/api/products/${cheap.id}`, { name: "Blankbox Mug Small" }, { token: admin })).status).toBe(200);
	});

	test("a write with If-None-Match (even `*`) is answered in full: only a GET's 200 is revalidated", async () => {
		const add = await shop.http.post("/api/cart/items", { variantId: cheap.variants[0].id, quantity: 1 }, { token: customer, headers: { "if-none-match": "*" } });
		expect({ status: add.status, lines: add.body?.items?.length > 0 }).toEqual({ status: 201, lines: true });
		const line = await shop.http.patch(`/api/cart/items/${cheap.variants[0].id}`, { quantity: 2 }, { token: customer, headers: { "if-none-match": "*" } });
		expect({ status: line.status, quantity: line.body?.items?.find((i: any) => i.variantId === cheap.variants[0].id)?.quantity }).toEqual({ status: 200, quantity: 2 });
		const removed = await shop.http.delete(`/api/cart/items/${cheap.variants[0].id}`, { token: customer, headers: { "if-none-match": "*" } });
		expect(removed.status).toBe(200);
		// A GET's 200 still is: `*` matches any answer.
		expect((await shop.http.get("/api/cart", { token: customer, headers: { "if-none-match": "*" } })).status).toBe(304);
	});

	test("a path asked with a method it does not take: 405 with Allow, not 404; a path that is not there stays 404", async () => {
		const cases: Array<[string, string, string]> = [
			["DELETE", "/api/products", "GET, HEAD, POST, OPTIONS"],
			["PUT", `/api/products/${cheap.id}`, "GET, HEAD, PATCH, DELETE, OPTIONS"],
			["POST", "/api/health", "GET, HEAD, OPTIONS"],
			["GET", "/api/payments/webhook", "POST, OPTIONS"],
			["PATCH", "/api/cart/", "GET, HEAD, DELETE, OPTIONS"],
		];
		for (const [method, path, allow] of cases) {
			const res = await shop.http.request(method, path, { token: customer });
			expect({ method, path, status: res.status, allow: res.headers.get("allow"), type: res.body?.type, allowed: res.body?.data?.allowed }).toEqual({ method, path, status: 405, allow, type: "METHOD_NOT_ALLOWED", allowed: allow.split(", ") });
		}
		for (const path of ["/api/nothing-here", "/api/products/x/y/z"]) {
			const res = await shop.http.request("DELETE", path, { token: customer });
			expect({ path, status: res.status, allow: res.headers.get("allow") }).toEqual({ path, status: 404, allow: null });
		}
	});

	test("an OPTIONS that is no CORS preflight answers what the path takes, and runs nothing (no product view, no personal data, no body read)", async () => {
		const views = jest.fn();
		const products = shop.broker.getLocalService("products") as any;
		const emit = jest.spyOn(products, "emitCounted").mockImplementation(views as any);
		try {
			const page = await shop.http.request("OPTIONS", `/api/products/${cheap.id}`);
			expect({ status: page.status, allow: page.headers.get("allow"), text: page.text }).toEqual({ status: 204, allow: "GET, HEAD, PATCH, DELETE, OPTIONS", text: "" });
			const me = await shop.http.request("OPTIONS", "/api/cart", { token: customer });
			expect({ status: me.status, text: me.text }).toEqual({ status: 204, text: "" });
			const withBody = await shop.http.request("OPTIONS", "/api/products", { raw: JSON.stringify({ pageSize: 1, sort: "nonsense" }) });
			expect({ status: withBody.status, allow: withBody.headers.get("allow") }).toEqual({ status: 204, allow: "GET, HEAD, POST, OPTIONS" });
			expect((await shop.http.request("OPTIONS", "/api/nothing-here")).status).toBe(404);
			expect(views).not.toHaveBeenCalled();
		} finally {
			emit.mockRestore();
		}
		// A preflight is still a preflight.
		const preflight = await shop.http.request("OPTIONS", `/api/products/${cheap.id}`, { headers: { origin: "https://shop.example", "access-control-request-method": "PATCH" } });
		expect({ status: preflight.status, methods: preflight.headers.get("access-control-allow-methods") }).toEqual({ status: 204, methods: expect.stringContaining("PATCH") });
	});

	test("If-None-Match on a POST is no revalidation: the request runs and answers as usual", async () => {
		const res = await shop.http.post("/api/cart/items", { variantId: (await shop.http.get(`/api/products/${dear.id}`)).body.variants[0].id, quantity: 1 }, { token: customer, headers: { "if-none-match": "*" } });
		expect(res.status).toBe(201);
		expect(res.headers.get("etag")).toBeNull();
		expect((await shop.http.delete(`/api/cart/items/${res.body.items[0].variantId}`, { token: customer })).status).toBeLessThan(300);
	});
});

describe("gateway stopping with keep-alive connections", () => {
	/** A GET on the agent's connection (the raw http module: the socket it reuses is the point). */
	function get(url: string, agent: http.Agent): Promise<{ status?: number; connection?: string; reused: boolean }> {
		return new Promise((resolve, reject) => {
			const req = http.get(url, { agent }, (res) => {
				res.resume();
				res.on("end", () => resolve({ status: res.statusCode, connection: res.headers.connection, reused: req.reusedSocket }));
			});
			req.on("error", reject);
		});
	}

	test("a request sent on an idle kept-alive connection after the gateway stopped listening is answered, with Connection: close", async () => {
		// quietMs: the connection counts as a busy client's, between two requests.
		const shop = await startShop({ services: [FakeUsers], apiSettings: { shutdownDrain: { idleMs: 1000, quietMs: 5000, maxMs: 3000 } } });
		const server = (shop.broker.getLocalService("api") as unknown as { server: http.Server }).server;
		const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
		try {
			expect(await get(`${shop.url}/api/health`, agent)).toMatchObject({ status: 200, connection: "keep-alive" });
			const stopping = shop.stop();
			await waitFor(() => server.listening, (listening) => !listening);
			// Before: http.Server#close() had dropped the idle connection, and this was a reset or a refusal.
			const during = await get(`${shop.url}/api/health`, agent);
			expect(during).toMatchObject({ connection: "close", reused: true });
			expect([200, 503]).toContain(during.status);
			await stopping;
		} finally {
			agent.destroy();
		}
	});

	test("once a stop begins, the listener closes as soon as no connection waits in its queue: new ones are refused, while a request already running is answered with Connection: close", async () => {
		let release!: () => void;
		const held = new Promise<void>((r) => (release = r));
		const Slow: ServiceSchema = { name: "slow", settings: { rest: "/" }, actions: { wait: { rest: "GET /slow/wait", params: {}, handler: async () => { await held; return { ok: true }; } } } };
		const shop = await startShop({ services: [FakeUsers, Slow] });
		const inFlight = get(`${shop.url}/api/slow/wait`, new http.Agent({ keepAlive: true }));
		const api = shop.broker.getLocalService("api") as any;
		await waitFor(() => api.openResponses.size, (n: number) => n === 1);
		const stopping = shop.stop();
		// Nothing waits to be accepted: closed after the loop's next look for I/O, the request still running.
		await new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));
		expect(api.server.listening).toBe(false);
		// Before: the listener stayed open until the requests in flight had ended (up to SHUTDOWN_TIMEOUT), and
		// this new request was accepted, then cut off by the stop.
		await expect(get(`${shop.url}/api/health`, new http.Agent({ keepAlive: false }))).rejects.toMatchObject({ code: "ECONNREFUSED" });
		release();
		expect(await inFlight).toMatchObject({ status: 200, connection: "close" });
		await stopping;
	});

	test("once a stop begins, an idle connection is let go at once, though another request still runs: nothing more reaches stopping services", async () => {
		let release!: () => void;
		const held = new Promise<void>((r) => (release = r));
		const Slow: ServiceSchema = { name: "slow", settings: { rest: "/" }, actions: { wait: { rest: "GET /slow/wait", params: {}, handler: async () => { await held; return { ok: true }; } } } };
		const shop = await startShop({ services: [FakeUsers, Slow], apiSettings: { shutdownDrain: { idleMs: 500, quietMs: 100, maxMs: 3000 } } });
		const idle = rawConnection(shop.url, "GET /api/health HTTP/1.1\r\nHost: shop\r\n\r\n");
		await waitFor(() => idle.received(), (r: string) => r.includes("\r\n\r\n{"));
		const inFlight = fetch(`${shop.url}/api/slow/wait`);
		await waitFor(() => (shop.broker.getLocalService("api") as any).openResponses.size, (n: number) => n === 1);
		await new Promise((r) => setTimeout(r, 150));
		const stopAt = Date.now();
		const stopping = shop.stop();
		// Before: it stayed open (and served requests) until every running request had ended.
		const closedAt = await within(idle.closedAt, 2000, Infinity);
		expect(closedAt - stopAt).toBeLessThan(1000);
		release();
		expect((await inFlight).status).toBe(200);
		await stopping;
	});

	test("a request still sending its body is cut shutdownDrain.maxMs after the stop began: it never ran, and it does not hold the stop for SHUTDOWN_TIMEOUT", async () => {
		const shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { shutdownDrain: { idleMs: 200, quietMs: 100, maxMs: 800 } } });
		const stalled = rawConnection(shop.url, 'POST /api/probe/echo HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"name": "ab"');
		await waitFor(() => (shop.broker.getLocalService("api") as any).openResponses.size, (n: number) => n === 1);
		const stopAt = Date.now();
		await shop.stop();
		// Before: ~SHUTDOWN_TIMEOUT (10 s), then the drain's maxMs.
		expect(Date.now() - stopAt).toBeLessThan(4000);
		expect(await stalled.closedAt).toBeLessThan(stopAt + 4000);
		expect(stalled.received()).not.toMatch(/^HTTP\/1\.1 2/);
	}, 20_000);

	test("connections the kernel had completed but the busy gateway had not yet accepted when the stop began are answered, not reset", async () => {
		const shop = await startShop({ services: [FakeUsers], apiSettings: { shutdownDrain: { idleMs: 500, quietMs: 100, maxMs: 3000 } } });
		const waiting = Array.from({ length: 5 }, () => rawConnection(shop.url, "GET /api/health HTTP/1.1\r\nHost: shop\r\n\r\n"));
		// net.connect connects on the next tick: after it, the handshakes are complete in the kernel (loopback),
		// and the connections wait in the listener's queue, as behind a loop kept busy by a burst of requests.
		await new Promise<void>((resolve) => process.nextTick(resolve));
		const stopping = shop.stop();
		await Promise.all(waiting.map((c) => c.closedAt));
		// Before: the listener was closed in this same turn, and the kernel reset every connection in its queue (ECONNRESET).
		for (const c of waiting) expect(c.received()).toMatch(/^HTTP\/1\.1 (200|503) /);
		await stopping;
	});

	test("a request on a fresh connection, still unread in the gateway's buffer when the stop begins, is answered, not reset", async () => {
		const shop = await startShop({ services: [FakeUsers], apiSettings: { shutdownDrain: { idleMs: 500, quietMs: 100, maxMs: 3000 } } });
		const fresh = rawConnection(shop.url, "");
		// Accepted, and quiet for longer than quietMs.
		await new Promise((r) => setTimeout(r, 250));
		fresh.socket.write("GET /api/health HTTP/1.1\r\nHost: shop\r\n\r\n");
		// In the same turn: the gateway has not read the request yet (as when a burst of logins keeps the loop busy).
		const stopping = shop.stop();
		await fresh.closedAt;
		// Before: the stop took the connection for a quiet one and reset it.
		expect(fresh.received()).toMatch(/^HTTP\/1\.1 (200|503) /);
		await stopping;
	});

	test("a request that starts sending its body on a kept-alive connection during the stop is cut maxMs in as well", async () => {
		const shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { shutdownDrain: { idleMs: 1000, quietMs: 5000, maxMs: 1500 } } });
		const conn = rawConnection(shop.url, "GET /api/health HTTP/1.1\r\nHost: shop\r\n\r\n");
		await waitFor(() => conn.received(), (r: string) => r.includes("\r\n\r\n{"));
		const stopAt = Date.now();
		const stopping = shop.stop();
		await new Promise((r) => setTimeout(r, 60));
		conn.socket.write('POST /api/probe/echo HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"name"');
		await stopping;
		// Before: it was not among the answers the stop looked at, and held the stop for SHUTDOWN_TIMEOUT (10 s).
		expect(Date.now() - stopAt).toBeLessThan(5000);
		expect(await conn.closedAt).toBeLessThan(stopAt + 5000);
	}, 20_000);

	test("an idle connection quiet for a while is closed at once: the stop does not wait out the drain for it", async () => {
		const shop = await startShop({ services: [FakeUsers], apiSettings: { shutdownDrain: { idleMs: 3000, quietMs: 100, maxMs: 5000 } } });
		const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
		try {
			expect(await get(`${shop.url}/api/health`, agent)).toMatchObject({ status: 200, connection: "keep-alive" });
			await new Promise((r) => setTimeout(r, 200));
			const t0 = Date.now();
			await shop.stop();
			expect(Date.now() - t0).toBeLessThan(1500);
		} finally {
			agent.destroy();
		}
	});
});

describe("gateway keep-alive behind a proxy that pools connections", () => {
	/** A GET on the agent's connection; `reused`: it went on the connection of the request before. */
	function get(url: string, agent: http.Agent): Promise<{ status?: number; reused: boolean }> {
		return new Promise((resolve, reject) => {
			const req = http.get(url, { agent }, (res) => {
				res.resume();
				res.on("end", () => resolve({ status: res.statusCode, reused: req.reusedSocket }));
			});
			req.on("error", reject);
		});
	}

	test("an idle connection outlives Node's 5 s: a proxy's next request on it is answered, not raced by the gateway's close", async () => {
		const shop = await startShop({ services: [FakeUsers] });
		const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
		try {
			expect(await get(`${shop.url}/api/health`, agent)).toMatchObject({ status: 200, reused: false });
			// Before: Node's default keepAliveTimeout had closed it (5 s, plus the 1 s grace Node 20 adds); ingress-nginx
			// and AWS ALB keep theirs 60 s.
			await new Promise((r) => setTimeout(r, 6600));
			expect(await get(`${shop.url}/api/health`, agent)).toEqual({ status: 200, reused: true });
		} finally {
			agent.destroy();
			await shop.stop();
		}
	}, 20_000);

	test("KEEP_ALIVE_TIMEOUT (settings.keepAliveTimeout): the gateway closes a connection idle for that long", async () => {
		const shop = await startShop({ services: [FakeUsers], apiSettings: { keepAliveTimeout: 1000 } });
		// A raw socket: an http.Agent drops a connection itself a second before the server's announced timeout.
		const conn = rawConnection(shop.url, "GET /api/health HTTP/1.1\r\nHost: shop\r\n\r\n");
		try {
			await waitFor(() => conn.received(), (r: string) => r.includes("\r\n\r\n"), 5_000, 5);
			const answeredAt = Date.now();
			const idle = (await within(conn.closedAt, 4000, 0)) - answeredAt;
			expect(conn.received()).toMatch(/^HTTP\/1\.1 200 .*Keep-Alive: timeout=1\r\n/s);
			// Node closes it a second after the timeout it announces.
			expect(idle).toBeGreaterThanOrEqual(900);
			expect(idle).toBeLessThan(3500);
		} finally {
			conn.socket.destroy();
			await shop.stop();
		}
	});
});
