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
import { waitFor } from "../helpers/wait";

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

	test("with a LOGLEVEL that hides warnings, the one-time password still reaches the operator (stderr)", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const written: string[] = [];
		const stderr = jest.spyOn(process.stderr, "write").mockImplementation((chunk: any) => (written.push(String(chunk)), true));
		const cfg = users.cfg;
		users.cfg = { ...cfg, logLevel: "error" };
		try {
			await users.createAdmin("quiet-admin@example.com");
		} finally {
			users.cfg = cfg;
			stderr.mockRestore();
		}
		expect(written.filter((l) => l.includes("quiet-admin@example.com") && /password: \S+/.test(l))).toHaveLength(1);
	});

	test("never promotes a customer who registered the default address", async () => {
		const users = shop.broker.getLocalService("users") as any;
		await users.db.users.updateMany({ role: "admin" }, { $set: { role: "customer" } });
		await users.ensureAdmin();
		const me = await shop.http.post("/api/auth/login", { email: "admin@example.com", password: /password: (\S+)/.exec(warnings.lines.find((l) => l.includes("password: "))!)![1] });
		expect(me.body.user.role).toBe("customer");
	});
});

describe("ADMIN_PASSWORD without ADMIN_EMAIL", () => {
	const CHOSEN = "harbour-lantern-passphrase";
	let shop: Shop;
	let warnings: ReturnType<typeof captureWarnings>;
	let restoreEnv: () => void;
	const unused = () => warnings.lines.filter((l) => l.includes("ADMIN_PASSWORD did not change any password"));
	beforeAll(async () => {
		warnings = captureWarnings();
		restoreEnv = setEnv({ ADMIN_EMAIL: undefined, ADMIN_PASSWORD: CHOSEN });
		const WithDefaultAdmin: ServiceSchema<Record<string, any>> = { name: "users", mixins: [UsersService as any], settings: { createDefaultAdmin: true } };
		shop = await startShop({ services: [WithDefaultAdmin], ...consoleLogger });
	});
	afterAll(async () => {
		await shop.stop();
		restoreEnv();
		warnings.restore();
	});

	test("is the default admin's password when that account is created: no random one printed", async () => {
		expect(warnings.lines.filter((l) => l.includes("password: "))).toEqual([]);
		const res = await shop.http.post("/api/auth/login", { email: "admin@example.com", password: CHOSEN });
		expect(res.status).toBe(200);
		expect(res.body.user.role).toBe("admin");
		expect(unused()).toEqual([]);
	});

	test("a restart with the same one says nothing; another one is said not to have changed the existing admin", async () => {
		const users = shop.broker.getLocalService("users") as any;
		await users.ensureAdmin();
		expect(unused()).toEqual([]);

		await users.ensureAdmin({ ...users.cfg, adminPassword: "another-lantern-passphrase" });
		expect(unused()).toHaveLength(1);
		expect(unused()[0]).toMatch(/ADMIN_EMAIL is unset and an admin exists already/);
		expect((await shop.http.post("/api/auth/login", { email: "admin@example.com", password: "another-lantern-passphrase" })).status).toBe(401);
		expect((await shop.http.post("/api/auth/login", { email: "admin@example.com", password: CHOSEN })).status).toBe(200);
	});

	test("at a start, the check of an unused ADMIN_PASSWORD (a bcrypt compare) is not waited for; its warning follows", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const before = unused().length;
		const check = jest.spyOn(users, "reportUnusedAdminPassword");
		const delay = users.settings.adminPasswordCheckDelayMs;
		users.settings.adminPasswordCheckDelayMs = 300;
		try {
			await users.ensureAdmin({ ...users.cfg, adminPassword: "fourth-lantern-passphrase" }, { warnLater: true });
			expect(check).not.toHaveBeenCalled();
			expect(unused().length).toBe(before);
			await waitFor(() => unused().length, (n) => n === before + 1);
			expect(unused()[before]).toMatch(/ADMIN_EMAIL is unset and an admin exists already/);
		} finally {
			users.settings.adminPasswordCheckDelayMs = delay;
			check.mockRestore();
		}
	});

	test("ADMIN_EMAIL's existing admin: another ADMIN_PASSWORD leaves its password, and says so", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const before = unused().length;
		await users.ensureAdmin({ ...users.cfg, adminEmail: "Admin@Example.com", adminPassword: "third-lantern-passphrase" });
		expect(unused().slice(before)).toEqual([expect.stringMatching(/admin@example\.com is an admin already/)]);
		expect((await shop.http.post("/api/auth/login", { email: "admin@example.com", password: CHOSEN })).status).toBe(200);
	});

	test("a weak one stops the start, as with ADMIN_EMAIL", async () => {
		const users = shop.broker.getLocalService("users") as any;
		await expect(users.ensureAdmin({ ...users.cfg, adminPassword: "password" })).rejects.toThrow(/^ADMIN_PASSWORD refused/);
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

	describe("an account that already has the address", () => {
		const users = () => shop.broker.getLocalService("users") as any;
		const ensureAdmin = (adminEmail: string, adminPassword?: string) => users().ensureAdmin({ ...readConfig(), adminEmail, adminPassword });
		async function customer(verified: boolean) {
			const email = `taken-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
			const reg = await shop.http.post("/api/auth/register", { email, password: PASSWORD });
			expect(reg.body.user.role).toBe("customer");
			if (verified) await users().db.users.updateOne({ email }, { $set: { isVerified: true } });
			return { email, token: reg.body.accessToken as string };
		}
		const roleAfterLogin = async (email: string, password: string) => {
			const res = await shop.http.post("/api/auth/login", { email, password });
			return res.status === 200 ? res.body.user.role : res.status;
		};

		test("with ADMIN_PASSWORD: taken over, with that password, and whoever registered it is signed out", async () => {
			const { email, token } = await customer(false);
			await ensureAdmin(email, "operator-otter-passphrase");
			expect(await roleAfterLogin(email, PASSWORD)).toBe(401);
			expect(await roleAfterLogin(email, "operator-otter-passphrase")).toBe("admin");
			expect((await shop.http.get("/api/me", { token })).status).toBe(401);
		});

		test("without ADMIN_PASSWORD: promoted, keeping its password, only when its owner verified the address", async () => {
			const unverified = await customer(false);
			await ensureAdmin(unverified.email);
			expect(await roleAfterLogin(unverified.email, PASSWORD)).toBe("customer");

			const verified = await customer(true);
			await ensureAdmin(verified.email);
			expect(await roleAfterLogin(verified.email, PASSWORD)).toBe("admin");
		});
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
