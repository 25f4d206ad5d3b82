/**
 * The staff's view of accounts: GET /api/users (by email, by role), GET /api/users/:id and
 * PATCH /api/users/:id/role. Admins only; an admin never changes their own role, and the shop is never
 * left without an admin, even when two admins demote each other at once.
 */
import { startShop, startShopWithAdmin, SHOP_SERVICE_NAMES, type Shop } from "../helpers/shop";
import { registerCustomer, uniqueEmail } from "../helpers/flows";
import { accountMailbox } from "../helpers/fakes";
import { waitFor } from "../helpers/wait";
import { verifyAccessToken } from "../../lib/jwt";

const ADMIN = { email: "admin@user-admin.test", password: "admin-password-user-admin-1" };
const PASSWORD = "correct horse battery";
const { schema: Mailbox, lastMail } = accountMailbox("staff-mailbox");

describe("the staff's view of accounts", () => {
	let shop: Shop;
	let admin: string;
	let adminId: string;
	beforeAll(async () => {
		({ adminToken: admin, ...shop } = await startShopWithAdmin(ADMIN, { services: [...SHOP_SERVICE_NAMES, Mailbox] }));
		adminId = (await shop.http.get("/api/me", { token: admin })).body.id;
	});
	afterAll(() => shop?.stop());

	const login = async (email: string) => (await shop.http.post("/api/auth/login", { email, password: PASSWORD })).body as { accessToken: string; refreshToken: string };
	/** Opens the verification link the account was mailed. */
	const verify = async (email: string) => {
		const token = await waitFor(() => lastMail("user.registered", email)?.verificationToken, (t) => typeof t === "string");
		expect((await shop.http.post("/api/auth/verify-email", { token })).status).toBe(200);
	};

	test("admins only: a guest gets 401 and a customer 403 on every route", async () => {
		const c = await registerCustomer(shop.http, uniqueEmail("nosy"));
		const calls: Array<[string, string, unknown]> = [
			["GET", "/api/users", undefined],
			["GET", `/api/users/${c.userId}`, undefined],
			["PATCH", `/api/users/${c.userId}/role`, { role: "admin" }],
		];
		for (const [method, path, body] of calls) {
			expect({ path, status: (await shop.http.request(method, path, { body })).status }).toEqual({ path, status: 401 });
			expect({ path, status: (await shop.http.request(method, path, { body, token: c.token })).status }).toEqual({ path, status: 403 });
		}
		expect((await shop.http.get("/api/me", { token: c.token })).body.role).toBe("customer");
	});

	test("an account is found by its email as a customer would type it, by role, and by id; an erased one is not", async () => {
		const http = shop.http;
		const email = uniqueEmail("Findable");
		const c = await registerCustomer(http, email);
		const found = await http.get(`/api/users?email=${encodeURIComponent(`  ${email.toUpperCase()} `)}`, { token: admin });
		expect(found.status).toBe(200);
		expect(found.body).toMatchObject({ total: 1, page: 1, rows: [{ id: c.userId, email: email.toLowerCase(), role: "customer", firstName: "Ada" }] });
		expect(JSON.stringify(found.body)).not.toMatch(/passwordHash|\$2[aby]\$/);
		expect((await http.get(`/api/users/${c.userId}`, { token: admin })).body).toMatchObject({ id: c.userId, email: email.toLowerCase() });

		const admins = await http.get("/api/users?role=admin&pageSize=100", { token: admin });
		expect(admins.body.rows.every((u: { role: string }) => u.role === "admin")).toBe(true);
		expect(admins.body.rows.map((u: { id: string }) => u.id)).toContain(adminId);
		const page = await http.get("/api/users?pageSize=1&page=2", { token: admin });
		expect(page.body).toMatchObject({ page: 2, pageSize: 1, rows: [expect.any(Object)] });
		expect(page.body.total).toBeGreaterThanOrEqual(2);

		expect((await http.post(`/api/users/${c.userId}/delete`, {}, { token: admin })).status).toBe(204);
		expect((await http.get(`/api/users?email=${encodeURIComponent(email)}`, { token: admin })).body).toMatchObject({ total: 0, rows: [] });
		expect((await http.get(`/api/users/${c.userId}`, { token: admin })).status).toBe(404);
		expect((await http.patch(`/api/users/${c.userId}/role`, { role: "admin" }, { token: admin })).status).toBe(404);
		expect((await http.get("/api/users/no-such-user", { token: admin })).status).toBe(404);
	});

	test("bad input names the field", async () => {
		const c = await registerCustomer(shop.http, uniqueEmail("field"));
		for (const [path, body, field] of [
			[`/api/users/${c.userId}/role`, { role: "owner" }, "role"],
			[`/api/users/${c.userId}/role`, {}, "role"],
		] as const) {
			const res = await shop.http.patch(path, body, { token: admin });
			expect(res.status).toBe(422);
			expect(res.body.data).toEqual([expect.objectContaining({ field })]);
		}
		// A list is no role: said so, not that "admin" is not one of the allowed values.
		const listed = await shop.http.patch(`/api/users/${c.userId}/role`, { role: ["admin"] }, { token: admin });
		expect(listed.body.data).toEqual([expect.objectContaining({ field: "role", message: expect.stringMatching(/must be a string/) })]);
		const badRole = await shop.http.get("/api/users?role=owner", { token: admin });
		expect(badRole.status).toBe(422);
		expect(badRole.body.data).toEqual([expect.objectContaining({ field: "role" })]);
	});

	test("a customer made admin works as one after refreshing; made customer again, their admin token stops at once, a refresh gives a customer's, and the account can be erased", async () => {
		const http = shop.http;
		const email = uniqueEmail("staff");
		await registerCustomer(http, email);
		const id = verifyAccessToken((await login(email)).accessToken).sub;
		// An address nobody proved could be anyone's who registered it first.
		const unproven = await http.patch(`/api/users/${id}/role`, { role: "admin" }, { token: admin });
		expect(unproven.status).toBe(409);
		expect(unproven.body.type).toBe("EMAIL_NOT_VERIFIED");
		await verify(email);
		const before = await login(email);

		const promoted = await http.patch(`/api/users/${id}/role`, { role: "admin" }, { token: admin });
		expect(promoted.status).toBe(200);
		expect(promoted.body).toMatchObject({ id, role: "admin" });
		// Asked again: nothing to change, the same answer.
		expect((await http.patch(`/api/users/${id}/role`, { role: "admin" }, { token: admin })).body).toMatchObject({ id, role: "admin" });
		expect((await http.get("/api/users", { token: before.accessToken })).body.type).toBe("TOKEN_EXPIRED");
		const asAdmin = (await http.post("/api/auth/refresh", { refreshToken: before.refreshToken })).body;
		expect((await http.get("/api/users", { token: asAdmin.accessToken })).status).toBe(200);

		// Staff are not erased; made a customer again, they can be.
		expect((await http.post(`/api/users/${id}/delete`, {}, { token: admin })).body.type).toBe("ADMIN_ACCOUNT");
		expect((await http.patch(`/api/users/${id}/role`, { role: "customer" }, { token: admin })).body).toMatchObject({ id, role: "customer" });
		// A token claiming more than its session holds is refused as a forged one would be; the session itself goes on.
		const stale = await http.get("/api/users", { token: asAdmin.accessToken });
		expect(stale.status).toBe(401);
		expect(stale.body.type).toBe("INVALID_TOKEN");
		const asCustomer = (await http.post("/api/auth/refresh", { refreshToken: asAdmin.refreshToken })).body;
		expect(verifyAccessToken(asCustomer.accessToken).role).toBe("customer");
		expect((await http.get("/api/users", { token: asCustomer.accessToken })).status).toBe(403);
		expect((await http.get("/api/me", { token: asCustomer.accessToken })).body.role).toBe("customer");
		expect((await http.post(`/api/users/${id}/delete`, {}, { token: admin })).status).toBe(204);
	});

	test("an admin cannot change their own role, nor make the ADMIN_EMAIL admin a customer (the next start would undo it)", async () => {
		const http = shop.http;
		const own = await http.patch(`/api/users/${adminId}/role`, { role: "customer" }, { token: admin });
		expect(own.status).toBe(409);
		expect(own.body.type).toBe("OWN_ROLE");

		const email = uniqueEmail("colleague");
		await registerCustomer(http, email);
		await verify(email);
		const colleague = verifyAccessToken((await login(email)).accessToken).sub;
		expect((await http.patch(`/api/users/${colleague}/role`, { role: "admin" }, { token: admin })).status).toBe(200);
		const configured = await http.patch(`/api/users/${adminId}/role`, { role: "customer" }, { token: (await login(email)).accessToken });
		expect(configured.status).toBe(409);
		expect(configured.body.type).toBe("CONFIGURED_ADMIN");
		expect((await http.get("/api/me", { token: admin })).body.role).toBe("admin");
	});
});

describe("the last admin", () => {
	let shop: Shop;
	// No ADMIN_EMAIL here: two admins of the shop's own making, and nobody else.
	beforeAll(async () => {
		shop = await startShop();
	});
	afterAll(() => shop?.stop());

	test("two admins demoting each other at once leave one", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const pair: Array<{ id: string }> = [];
		for (const name of ["left", "right"]) {
			const c = await registerCustomer(shop.http, uniqueEmail(name));
			await users.db.users.updateOne({ id: c.userId }, { $set: { role: "admin", isVerified: true } });
			pair.push({ id: c.userId });
		}
		const [left, right] = pair;
		// Straight to the action, both at once: over HTTP the second request would often be stopped at the
		// gateway already (its admin token goes stale with the first change), and this is about the rest.
		const asAdmin = (who: { id: string }) => ({ meta: { user: { id: who.id, role: "admin" } } });
		const answers = await Promise.all(
			[[left, right], [right, left]].map(([by, target]) =>
				shop.broker.call("users.setUserRole", { id: target.id, role: "customer" }, asAdmin(by)).then(
					() => 200,
					(err) => (err.type === "LAST_ADMIN" ? 409 : err),
				),
			),
		);
		const admins = (await shop.broker.call<any, any>("users.listUsers", { role: "admin" }, asAdmin(left))).rows.map((u: { id: string }) => u.id);
		expect(admins.length).toBeGreaterThanOrEqual(1);
		// Each 200 demoted the other; each 409 changed nothing.
		expect({ answers, admins: admins.sort() }).toEqual({ answers, admins: [left, right].filter((_, i) => answers[1 - i] !== 200).map((x) => x.id).sort() });
		for (const a of answers) expect([200, 409]).toContain(a);
	});
});
