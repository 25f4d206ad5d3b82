/**
 * The REST contract as a whole: with all nine services and the gateway, every route of
 * docs/API.md is served and described in a valid OpenAPI document, and nothing else leaks out.
 */
import fs from "node:fs";
import path from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import { startShop, SHOP_SERVICE_NAMES, type Shop } from "../helpers/shop";
import { SHOP_ROUTES } from "../../lib/rest-routes";

/** `| GET, POST | /api/me/addresses | ...` rows of the contract → ["GET /api/me/addresses", ...] */
function contractRoutes(): string[] {
	const md = fs.readFileSync(path.join(__dirname, "../../docs/API.md"), "utf8");
	const routes: string[] = [];
	for (const m of md.matchAll(/^\| ((?:GET|POST|PATCH|DELETE|PUT)(?:, (?:GET|POST|PATCH|DELETE|PUT))*) \| (\/api\/[^ |]+)/gm)) {
		for (const method of m[1].split(", ")) routes.push(`${method} ${m[2]}`);
	}
	// The analytics table lists paths without a method column: all are GET.
	for (const m of md.matchAll(/^\| GET \| (\/api\/analytics\/[^ |]+)/gm)) routes.push(`GET ${m[1]}`);
	return [...new Set(routes)];
}

const toOpenApiPath = (p: string) => p.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

describe("REST contract", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop();
	});
	afterAll(() => shop.stop());

	test("health lists the nine services", async () => {
		const res = await shop.http.get("/api/health");
		expect(res.status).toBe(200);
		expect(res.body.services).toEqual(expect.arrayContaining([...SHOP_SERVICE_NAMES]));
	});

	test("the OpenAPI document validates and describes every route of API.md", async () => {
		const res = await shop.http.get("/api/openapi.json");
		expect(res.status).toBe(200);
		await SwaggerParser.validate(structuredClone(res.body));
		const routes = contractRoutes();
		expect(routes.length).toBeGreaterThan(45);
		const served = new Set<string>();
		for (const [p, ops] of Object.entries<Record<string, unknown>>(res.body.paths)) {
			for (const method of Object.keys(ops)) served.add(`${method.toUpperCase()} ${p}`);
		}
		// API.md names some path parameters differently (:idOrSlug vs :id): compare the shapes.
		const shape = (r: string) => toOpenApiPath(r).replace(/\{[^}]+\}/g, "{}");
		const servedShapes = new Set([...served].map(shape));
		const missing = routes.filter((r) => !servedShapes.has(shape(r)));
		expect(missing).toEqual([]);
	});

	test("the gateway's list of shop routes (lib/rest-routes.ts) is exactly what the services serve", () => {
		const api = shop.broker.getLocalService("api") as unknown as { aliases: Array<{ method: string; fullPath: string }> };
		const served = api.aliases.map((a) => `${a.method} ${a.fullPath}`).sort();
		expect([...SHOP_ROUTES].sort()).toEqual(served);
	});

	test("every operation that needs a user says so, and no internal action is exposed", async () => {
		const doc = (await shop.http.get("/api/openapi.json")).body;
		const ops = Object.entries<Record<string, any>>(doc.paths).flatMap(([p, o]) => Object.entries(o).map(([m, op]) => ({ route: `${m.toUpperCase()} ${p}`, op })));
		for (const { route, op } of ops) {
			if (/^(POST|PATCH|DELETE) \/api\/(me|orders|reviews|promotions|categories|products|inventory)/.test(route) && !route.includes("/webhook")) {
				expect({ route, security: op.security }).toEqual({ route, security: expect.any(Array) });
			}
			expect(op.summary ?? "").not.toMatch(/\b(checkSession|reserve|release|commit|charge|snapshot|outboxSince|listForIndex)\b/);
		}
	});

	test("routes answer with the contract's statuses", async () => {
		expect((await shop.http.get("/api/categories")).status).toBe(200);
		expect((await shop.http.get("/api/products?pageSize=5")).status).toBe(200);
		expect((await shop.http.get("/api/search?q=shirt")).status).toBe(200);
		expect((await shop.http.get("/api/search/autocomplete?q=sh")).status).toBe(200);
		expect((await shop.http.get("/api/me")).status).toBe(401);
		expect((await shop.http.get("/api/orders")).status).toBe(401);
		expect((await shop.http.get("/api/analytics/sales")).status).toBe(401);
		expect((await shop.http.post("/api/promotions", { code: "X", type: "percent", value: 5 })).status).toBe(401);
		expect((await shop.http.get("/api/cart")).status).toBe(200);
		expect((await shop.http.post("/api/payments/webhook", {})).status).toBe(404);
	});
});
