/**
 * http_responses_total{code}: what customers got from the gateway, counted whatever failed behind it.
 * A route whose service has no node answers 503 without any call failing, which Moleculer's request
 * metrics (and the alerts on them) never saw. Also the answers given before a request reaches a route
 * (a bad Host, a request Node's parser refuses), and answer lines for answers from the response cache.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import { startShop, type Shop } from "../helpers/shop";

jest.setTimeout(30_000);

describe("gateway answers by status", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users", "products"], broker: { metrics: { enabled: true, reporter: [] } } });
	});
	afterAll(() => shop?.stop());

	const count = (code: string) => (shop.broker.metrics.getMetric("http_responses_total") as any)?.get({ code })?.value ?? 0;
	const settle = () => new Promise((r) => setTimeout(r, 50));
	/** Raw bytes to the gateway; the status line of its answer. */
	const raw = (request: string) =>
		new Promise<string>((resolve, reject) => {
			const port = ((shop.broker.getLocalService("api") as any).server.address() as AddressInfo).port;
			const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
			let data = "";
			socket.on("data", (d) => (data += d));
			socket.on("close", () => resolve(data.split("\r\n")[0]));
			socket.on("error", reject);
		});

	test("each answer is counted once under its status, an absent service's 503 too", async () => {
		const before = { ok: count("200"), unauthorized: count("401"), unavailable: count("503") };
		expect((await shop.http.get("/api/health")).status).toBe(200);
		expect((await shop.http.get("/api/health")).status).toBe(200);
		expect((await shop.http.get("/api/me")).status).toBe(401);
		// The orders service is not in this shop: a shop route without a node.
		expect((await shop.http.get("/api/orders")).status).toBe(503);
		// Counted when the connection's answer is done.
		await settle();
		expect({ ok: count("200"), unauthorized: count("401"), unavailable: count("503") }).toEqual({
			ok: before.ok + 2,
			unauthorized: before.unauthorized + 1,
			unavailable: before.unavailable + 1,
		});
		// Moleculer's request metrics: the 503 is no failed call at all.
		const errors = (shop.broker.metrics.getMetric("moleculer.request.error.total") as any)?.values ?? new Map();
		expect([...errors.values()].filter((item: any) => item.labels?.errorCode === 503)).toEqual([]);
	});

	test("answers given before a route is reached are counted: a bad Host, a request the parser refuses", async () => {
		const before = count("400");
		expect(await raw("GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")).toBe("HTTP/1.1 400 Bad Request");
		expect(await raw("GET /api/health HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
		await settle();
		expect(count("400")).toBe(before + 2);
	});

	test("an answer from the response cache has its answer line, with the request id its client got", async () => {
		const api = shop.broker.getLocalService("api") as unknown as { logger: { info: (...args: unknown[]) => void } };
		expect((await shop.http.get("/api/products?pageSize=3")).status).toBe(200);
		const info = jest.spyOn(api.logger, "info");
		const cached = await shop.http.get("/api/products?pageSize=3");
		const lines = info.mock.calls.map((args) => String(args[0]));
		info.mockRestore();
		expect(cached.status).toBe(200);
		const id = cached.headers.get("x-request-id");
		expect(lines.filter((l) => l.includes(`[${id}]`))).toEqual([expect.stringMatching(/^=> GET \/api\/products\?pageSize=3 /), expect.stringMatching(/^<= 200 GET \/api\/products\?pageSize=3 /)]);
	});
});
