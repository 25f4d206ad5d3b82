/** The gateway compresses JSON answers for clients that take brotli or gzip (COMPRESSION, on by default). */
import http from "node:http";
import zlib from "node:zlib";
import type { ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { withEnv } from "../helpers/env";
import { FakeUsers } from "../helpers/fakes";

const rows = Array.from({ length: 80 }, (_, i) => ({ id: `p${i}`, name: `Product number ${i}`, price: 1000 + i, currency: "USD" }));
let handled = 0;

const Probe: ServiceSchema = {
	name: "probe",
	settings: { rest: "/" },
	actions: {
		// As the product list is: kept by the broker's cache and, for guests, by the gateway's.
		cached: { rest: "GET /probe/cached", cache: true, publicCache: true, params: {}, handler: () => (handled++, { rows }) },
		live: { rest: "GET /probe/live", params: {}, handler: () => ({ rows }) },
		small: { rest: "GET /probe/small", params: {}, handler: () => ({ ok: true }) },
	},
} as ServiceSchema;

interface Raw {
	status: number;
	headers: http.IncomingHttpHeaders;
	bytes: Buffer;
}

/** A request whose answer is read as the bytes sent (fetch would inflate them and hide the coding). */
function raw(url: string, headers: Record<string, string> = {}, method = "GET"): Promise<Raw> {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method, headers, agent: false }, (res) => {
			const chunks: Buffer[] = [];
			res.on("data", (c) => chunks.push(c));
			res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, bytes: Buffer.concat(chunks) }));
		});
		req.on("error", reject);
		req.end();
	});
}

const inflate = (r: Raw) => {
	const coding = r.headers["content-encoding"];
	const plain = coding === "gzip" ? zlib.gunzipSync(r.bytes) : coding === "br" ? zlib.brotliDecompressSync(r.bytes) : r.bytes;
	return JSON.parse(plain.toString());
};
const vary = (r: Raw) => String(r.headers.vary ?? "").split(",").map((s) => s.trim().toLowerCase());

describe("compressed answers", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, Probe], apiSettings: { cors: { origin: ["https://shop.example"] } } });
	});
	afterAll(() => shop.stop());

	test.each(["/api/probe/live", "/api/probe/cached"])("%s: gzip or brotli as asked, with its length, the same JSON and the same ETag as the plain answer", async (path) => {
		const plain = await raw(shop.url + path);
		expect(plain.headers["content-encoding"]).toBeUndefined();
		expect(vary(plain)).toContain("accept-encoding");
		expect(plain.headers["content-length"]).toBe(String(plain.bytes.length));

		for (const [accept, coding] of [["gzip, deflate", "gzip"], ["gzip, deflate, br", "br"], ["br;q=0.5, gzip", "gzip"]]) {
			const r = await raw(shop.url + path, { "Accept-Encoding": accept });
			expect(r.status).toBe(200);
			expect(r.headers["content-encoding"]).toBe(coding);
			expect(r.headers["content-length"]).toBe(String(r.bytes.length));
			expect(r.bytes.length).toBeLessThan(plain.bytes.length / 3);
			expect(vary(r)).toContain("accept-encoding");
			expect(r.headers["content-type"]).toBe("application/json; charset=utf-8");
			expect(r.headers.etag).toBe(plain.headers.etag);
			expect(inflate(r)).toEqual(JSON.parse(plain.bytes.toString()));
		}
	});

	test("a refused coding, identity or a small answer is sent as it is", async () => {
		for (const accept of ["identity", "gzip;q=0, br;q=0", "deflate"]) {
			const r = await raw(`${shop.url}/api/probe/live`, { "Accept-Encoding": accept });
			expect(r.headers["content-encoding"]).toBeUndefined();
			expect(JSON.parse(r.bytes.toString()).rows).toHaveLength(rows.length);
		}
		const small = await raw(`${shop.url}/api/probe/small`, { "Accept-Encoding": "gzip, br" });
		expect(small.headers["content-encoding"]).toBeUndefined();
		expect(small.bytes.toString()).toBe('{"ok":true}');
		expect(vary(small)).toContain("accept-encoding");
		// Errors are small: as they were.
		const missing = await raw(`${shop.url}/api/nothing-here`, { "Accept-Encoding": "gzip" });
		expect(missing.status).toBe(404);
		expect(missing.headers["content-encoding"]).toBeUndefined();
	});

	test("the gateway's cached answer is compressed once and still sent plain to a client that takes no coding", async () => {
		const url = `${shop.url}/api/probe/cached?page=2`;
		const first = await raw(url, { "Accept-Encoding": "br" });
		const calls = handled;
		const compressions = jest.spyOn(zlib, "brotliCompressSync");
		let second: Raw;
		try {
			second = await raw(url, { "Accept-Encoding": "br" });
			// Another spelling of the same address is the same kept answer (lib/request-target.ts).
			expect((await raw(`${shop.url}/api/%70robe/cached?page=2`, { "Accept-Encoding": "br" })).bytes.equals(first.bytes)).toBe(true);
			expect(compressions).not.toHaveBeenCalled();
		} finally {
			compressions.mockRestore();
		}
		expect(handled).toBe(calls);
		expect(second.headers["content-encoding"]).toBe("br");
		expect(second.bytes.equals(first.bytes)).toBe(true);
		const plain = await raw(url);
		expect(handled).toBe(calls);
		expect(plain.headers["content-encoding"]).toBeUndefined();
		expect(JSON.parse(plain.bytes.toString())).toEqual(inflate(first));
	});

	test.each(["/api/probe/live", "/api/probe/cached"])("%s: a revalidation is a 304 in any coding, and HEAD has the GET's headers", async (path) => {
		const full = await raw(shop.url + path, { "Accept-Encoding": "gzip" });
		const again = await raw(shop.url + path, { "Accept-Encoding": "gzip", "If-None-Match": String(full.headers.etag) });
		expect(again.status).toBe(304);
		expect(again.bytes.length).toBe(0);
		expect(again.headers["content-encoding"]).toBeUndefined();
		expect(vary(again)).toContain("accept-encoding");

		const head = await raw(shop.url + path, { "Accept-Encoding": "gzip" }, "HEAD");
		expect(head.status).toBe(200);
		expect(head.bytes.length).toBe(0);
		expect(head.headers["content-encoding"]).toBe("gzip");
		expect(head.headers["content-length"]).toBe(full.headers["content-length"]);
	});

	test("with a CORS origin list, answers vary by Origin and by Accept-Encoding", async () => {
		for (const path of ["/api/probe/live", "/api/probe/cached"]) {
			const r = await raw(shop.url + path, { Origin: "https://shop.example", "Accept-Encoding": "gzip" });
			expect(r.headers["access-control-allow-origin"]).toBe("https://shop.example");
			expect(vary(r)).toEqual(["origin", "accept-encoding"]);
			expect(r.headers["content-encoding"]).toBe("gzip");
		}
	});
});

describe("COMPRESSION=false", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await withEnv({ COMPRESSION: "false" }, () => startShop({ services: [FakeUsers, Probe] }));
	});
	afterAll(() => shop.stop());

	test("answers are sent as they are, and do not vary by Accept-Encoding", async () => {
		for (const path of ["/api/probe/live", "/api/probe/cached", "/api/probe/cached"]) {
			const r = await raw(shop.url + path, { "Accept-Encoding": "gzip, br" });
			expect(r.headers["content-encoding"]).toBeUndefined();
			expect(vary(r)).not.toContain("accept-encoding");
			expect(JSON.parse(r.bytes.toString()).rows).toHaveLength(rows.length);
		}
	});
});
