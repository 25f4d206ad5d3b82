/**
 * Admin bootstrap at start: ADMIN_EMAIL / ADMIN_PASSWORD create or promote an admin; the embedded
 * default creates admin@example.com with a random password printed once. Also: login still works
 * when the cart service is absent (the guest-cart merge is best effort).
 */
import type { ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { readConfig } from "../../lib/config";
import { verifyAccessToken } from "../../lib/jwt";
import UsersService from "../../services/users.service";
import { setEnv } from "../helpers/env";

const PASSWORD = "velvet-otter-42";

/** The broker's Console logger writes warnings through console.warn: capture them. */
function captureWarnings() {
	const lines: string[] = [];
	const spy = jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
	return { lines, restore: () => spy.mockRestore() };
}
const consoleLogger = { broker: { logger: { type: "Console", options: { level: "warn", colors: false, formatter: "simple" } } } as any };

describe("default admin in the embedded setup", () => {
	let shop: Shop;
	let warnings: ReturnType<typeof captureWarnings>;
	beforeAll(async () => {
		warnings = captureWarnings();
		// Outside tests the default is on; here it is switched on explicitly.
		const WithDefaultAdmin: ServiceSchema<Record<string, any>> = { name: "users", mixins: [UsersService as any], settings: { createDefaultAdmin: true } };
		shop = await startShop({ services: [WithDefaultAdmin], ...consoleLogger });
	});
	afterAll(async () => {
		await shop.stop();
		warnings.restore();
	});

	test("admin@example.com is created with a password printed once, and it logs in as admin", async () => {
		const printed = warnings.lines.filter((l) => l.includes("admin@example.com") && l.includes("password"));
		expect(printed).toHaveLength(1);
		const password = /password: (\S+)/.exec(printed[0])![1];
		const res = await shop.http.post("/api/auth/login", { email: "admin@example.com", password });
		expect(res.status).toBe(200);
		expect(res.body.user).toMatchObject({ role: "admin", isVerified: true });
		expect(verifyAccessToken(res.body.accessToken).role).toBe("admin");

		// A second start with an admin present creates nothing and prints nothing.
		await (shop.broker.getLocalService("users") as any).ensureAdmin();
		expect(warnings.lines.filter((l) => l.includes("admin@example.com") && l.includes("password"))).toHaveLength(1);
	});

	test("never promotes a customer who registered the default address", async () => {
		const users = shop.broker.getLocalService("users") as any;
		await users.db.users.updateMany({ role: "admin" }, { $set: { role: "customer" } });
		await users.ensureAdmin();
		const me = await shop.http.post("/api/auth/login", { email: "admin@example.com", password: /password: (\S+)/.exec(warnings.lines.find((l) => l.includes("password: "))!)![1] });
		expect(me.body.user.role).toBe("customer");
	});
});

describe("ADMIN_EMAIL and ADMIN_PASSWORD", () => {
	let shop: Shop;
	let restoreEnv: () => void;
	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: "  Owner@Shop.Example ", ADMIN_PASSWORD: "owner-otter-passphrase" });
		shop = await startShop({ services: ["users"] });
	});
	afterAll(async () => {
		await shop.stop();
		restoreEnv();
	});

	test("creates that admin at start", async () => {
		const res = await shop.http.post("/api/auth/login", { email: "owner@shop.example", password: "owner-otter-passphrase" });
		expect(res.status).toBe(200);
		expect(res.body.user.role).toBe("admin");
	});

	test("promotes an existing customer, keeping their password", async () => {
		const email = `promoted-${Date.now()}@example.com`;
		const reg = await shop.http.post("/api/auth/register", { email, password: PASSWORD });
		expect(reg.body.user.role).toBe("customer");
		await (shop.broker.getLocalService("users") as any).ensureAdmin({ ...readConfig(), adminEmail: email, adminPassword: "ignored-otter-pass" });
		const res = await shop.http.post("/api/auth/login", { email, password: PASSWORD });
		expect(res.status).toBe(200);
		expect(res.body.user.role).toBe("admin");
	});

	test("refuses a weak ADMIN_PASSWORD", async () => {
		const users = shop.broker.getLocalService("users") as any;
		await expect(users.ensureAdmin({ ...readConfig(), adminEmail: "weak@shop.example", adminPassword: "password" })).rejects.toThrow(/ADMIN_PASSWORD/);
	});

	test("without a cart service, login with X-Cart-Id still succeeds", async () => {
		const email = `cartless-${Date.now()}@example.com`;
		const reg = await shop.http.post("/api/auth/register", { email, password: PASSWORD }, { headers: { "X-Cart-Id": "guest-cart" } });
		expect(reg.status).toBe(201);
		const res = await shop.http.post("/api/auth/login", { email, password: PASSWORD }, { headers: { "X-Cart-Id": "guest-cart" } });
		expect(res.status).toBe(200);
	});
});
