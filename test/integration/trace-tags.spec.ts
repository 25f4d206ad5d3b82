/**
 * Tracing as the shop configures it (moleculer.config.ts): spans of a real register, login, refresh
 * and checkout keep their params but no password, token or card token.
 */
import { TracerExporters } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { buildBrokerConfig } from "../../moleculer.config";
import { addToCart, checkout, createProduct, login, registerCustomer } from "../helpers/flows";
import { setEnv } from "../helpers/env";

jest.setTimeout(30_000);

const ADMIN = { email: "trace-admin@example.com", password: "Trace-Adm1n-Passw0rd!" };

/** Keeps every finished span's tags. */
class CapturingExporter extends (TracerExporters as any).Base {
	spans: Array<{ name: string; tags: Record<string, unknown>; error?: unknown }> = [];
	spanFinished(span: any) {
		// What an exporter sends of a failed call's error (Moleculer's errorFields: its data included).
		const error = span.error ? { message: span.error.message, data: span.error.data } : undefined;
		this.spans.push({ name: span.name, tags: span.tags, error });
	}
}

describe("tracing tags", () => {
	let shop: Shop;
	let restoreEnv: () => void;
	const exporter = new CapturingExporter();

	beforeAll(async () => {
		const { tracing } = buildBrokerConfig({ ...process.env, NODE_ENV: "test", TRACE_EXPORTER: "console" });
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_SECRET_KEY: undefined });
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments"], broker: { tracing: { ...(tracing as object), exporter: [exporter] } as any } });
	});
	afterAll(async () => {
		await shop?.stop();
		restoreEnv();
	});

	test("params are tagged, secrets are not", async () => {
		const admin = await login(shop.http, ADMIN.email, ADMIN.password);
		const buyer = await registerCustomer(shop.http);
		const logged = await shop.http.post("/api/auth/login", { email: buyer.email, password: "correct horse battery" });
		expect(logged.status).toBe(200);
		expect((await shop.http.post("/api/auth/refresh", { refreshToken: logged.body.refreshToken })).status).toBe(200);
		const { variantId } = await createProduct(shop.http, admin);
		await addToCart(shop.http, buyer.token, variantId);
		expect((await checkout(shop.http, buyer, undefined, "pm_card_mastercard")).status).toBe(201);

		const names = exporter.spans.map((s: any) => s.name);
		expect(names).toEqual(expect.arrayContaining(["action 'users.login'", "action 'users.refresh'", "action 'orders.checkout'", "action 'payments.charge'"]));
		const loginSpan = exporter.spans.find((s: any) => s.name === "action 'users.login'" && (s.tags.params as any)?.email === buyer.email);
		expect(loginSpan?.tags.params).toEqual(expect.objectContaining({ email: buyer.email, password: "[redacted]" }));
		const all = JSON.stringify(exporter.spans.map((s: any) => s.tags));
		for (const secret of ["correct horse battery", ADMIN.password, logged.body.refreshToken, logged.body.accessToken, buyer.token, "pm_card_mastercard"]) {
			expect(all).not.toContain(secret);
		}
	});

	test("a secret sent where it is refused reaches neither a span's name, its tags nor its error", async () => {
		exporter.spans.length = 0;
		// In the query string (refused: 400), and as a value of the wrong type (422, which echoes values it refuses).
		expect((await shop.http.get("/api/auth/verify-email?token=QueryLeakTok1234&password=QueryLeakPass987")).status).toBe(400);
		expect((await shop.http.post("/api/auth/login", { email: "nobody@example.com", password: 87654321123 })).status).toBe(422);
		expect((await shop.http.post("/api/auth/refresh", { refreshToken: ["LeakedRefreshTok"] })).status).toBe(422);
		const rest = exporter.spans.filter((s) => s.name.startsWith("GET /api/auth/verify-email"));
		expect(rest).toHaveLength(1);
		expect(rest[0].name).toBe("GET /api/auth/verify-email?token=***&password=***");
		expect(rest[0].tags.params).toEqual({ req: { url: "/api/auth/verify-email?token=***&password=***", method: "GET" } });
		const all = JSON.stringify(exporter.spans);
		expect(all).toContain("[redacted]");
		for (const secret of ["QueryLeakTok1234", "QueryLeakPass987", "87654321123", "LeakedRefreshTok"]) expect(all).not.toContain(secret);
	});
});
