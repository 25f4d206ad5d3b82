/**
 * A customer changes their email address: POST /api/me/email (with the password) mails a link to
 * the new address; POST /api/auth/confirm-email-change makes the change, retires every link mailed
 * to the old address, and tells the old address. With the real users and notifications services.
 */
import { startShopWithAdmin, SHOP_SERVICE_NAMES, type Shop } from "../helpers/shop";
import { waitFor } from "../helpers/wait";
import { accountMailbox } from "../helpers/fakes";

const ADMIN = { email: "admin@email-change.test", password: "admin-password-email-1" };
const PASSWORD = "velvet-otter-42";

const { schema: Mailbox, events: mailbox, lastMail } = accountMailbox();

let seq = 0;
const newEmail = (tag: string) => `${tag}-${Date.now().toString(36)}-${++seq}@example.com`;

describe("a customer changes their email address", () => {
	let shop: Shop;
	let admin: string;
	beforeAll(async () => {
		({ adminToken: admin, ...shop } = await startShopWithAdmin(ADMIN, { services: [...SHOP_SERVICE_NAMES, Mailbox] }));
	});
	afterAll(() => shop?.stop());

	async function register(email: string) {
		const res = await shop.http.post("/api/auth/register", { email, password: PASSWORD, firstName: "Ada" });
		expect(res.status).toBe(201);
		return res.body as { user: { id: string }; accessToken: string };
	}
	const change = (token: string, body: Record<string, unknown>) => shop.http.post("/api/me/email", body, { token });
	const fields = (res: { body: any }) => (res.body?.data ?? []).map((d: { field: string; type?: string }) => `${d.field}:${d.type ?? ""}`);

	test("the link goes to the new address; opening it moves the account, retires the old address's links and tells the old address", async () => {
		const http = shop.http;
		const old = newEmail("old");
		const next = newEmail("next");
		const taken = newEmail("taken");
		const me = await register(old);
		await register(taken);

		expect((await http.post("/api/me/email", { newEmail: next, password: PASSWORD })).status).toBe(401);
		expect(fields(await change(me.accessToken, { newEmail: next, password: "not it" }))).toEqual(["password:wrongPassword"]);
		expect(fields(await change(me.accessToken, { newEmail: old.toUpperCase(), password: PASSWORD }))).toEqual(["newEmail:sameEmail"]);
		expect(fields(await change(me.accessToken, { newEmail: "not an address", password: PASSWORD }))).toEqual(["newEmail:email"]);
		const clash = await change(me.accessToken, { newEmail: taken, password: PASSWORD });
		expect({ status: clash.status, type: clash.body.type, fields: fields(clash) }).toEqual({ status: 409, type: "EMAIL_TAKEN", fields: ["newEmail:"] });

		// A reset link mailed to the old address before the change.
		expect((await http.post("/api/auth/password-reset", { email: old })).status).toBe(202);
		const resetToken = lastMail("user.password_reset_requested", old).resetToken;

		expect(await change(me.accessToken, { newEmail: next, password: PASSWORD })).toMatchObject({ status: 202, body: { accepted: true } });
		// One confirmation a minute: the route cannot flood someone's inbox.
		const soon = await change(me.accessToken, { newEmail: newEmail("again"), password: PASSWORD });
		expect(soon.status).toBe(429);
		expect(Number(soon.headers.get("retry-after"))).toBeGreaterThan(55);
		// Retry-After says what is left of the minute, not a whole minute again.
		const users = (shop.broker.getLocalService("users") as any).db.users;
		await users.updateOne({ id: me.user.id }, { $set: { changeMailAt: new Date(Date.now() - 40_000) } });
		const later = await change(me.accessToken, { newEmail: newEmail("again"), password: PASSWORD });
		expect(later.status).toBe(429);
		expect(Number(later.headers.get("retry-after"))).toBeGreaterThanOrEqual(19);
		expect(Number(later.headers.get("retry-after"))).toBeLessThanOrEqual(21);
		expect(later.body.data).toEqual({ retryAfter: Number(later.headers.get("retry-after")) });
		const sent = mailbox.find((m) => m.name === "user.email_change_requested" && m.payload.email === next)!.payload;
		expect(sent.changeToken).toMatch(/^sealed\.v1\./);
		const token = lastMail("user.email_change_requested", next).changeToken;

		// Nothing changes until the new mailbox answers.
		expect((await http.get("/api/me", { token: me.accessToken })).body.email).toBe(old);
		expect((await http.post("/api/auth/login", { email: old, password: PASSWORD })).status).toBe(200);

		const confirmed = await http.post("/api/auth/confirm-email-change", { token });
		expect(confirmed.status).toBe(200);
		expect(confirmed.body.user).toMatchObject({ id: me.user.id, email: next, isVerified: true });
		expect(fields(await http.post("/api/auth/confirm-email-change", { token }))).toEqual(["token:invalidToken"]);
		expect((await http.post("/api/auth/login", { email: next, password: PASSWORD })).status).toBe(200);
		expect((await http.post("/api/auth/login", { email: old, password: PASSWORD })).status).toBe(401);
		// The reset link the old mailbox holds no longer works, and the session stays.
		expect(fields(await http.post("/api/auth/password-reset/confirm", { token: resetToken, password: "taken-over-otter-9" }))).toEqual(["token:invalidToken"]);
		expect((await http.get("/api/me", { token: me.accessToken })).body.email).toBe(next);

		// The new address got the link, the old one the notice naming the new one.
		const messages = await waitFor(
			() => http.get(`/api/notifications?userId=${me.user.id}&pageSize=50`, { token: admin }),
			(r) => r.body.rows.some((m: any) => m.template === "email-changed"),
		);
		const byTemplate = Object.fromEntries(messages.body.rows.map((m: any) => [m.template, m.recipient]));
		expect(byTemplate).toMatchObject({ "confirm-email-change": next, "email-changed": old });
	}, 30_000);

	test("a password change or reset retires a pending change: whoever asked for it may have known only the old password", async () => {
		const http = shop.http;
		for (const how of ["change", "reset"] as const) {
			const old = newEmail(`owner-${how}`);
			const thief = newEmail(`thief-${how}`);
			const me = await register(old);
			expect((await change(me.accessToken, { newEmail: thief, password: PASSWORD })).status).toBe(202);
			const token = lastMail("user.email_change_requested", thief).changeToken;
			if (how === "change") {
				expect((await http.post("/api/me/password", { currentPassword: PASSWORD, newPassword: "owner-took-it-back-1" }, { token: me.accessToken })).status).toBe(204);
			} else {
				expect((await http.post("/api/auth/password-reset", { email: old })).status).toBe(202);
				const reset = lastMail("user.password_reset_requested", old).resetToken;
				expect((await http.post("/api/auth/password-reset/confirm", { token: reset, password: "owner-took-it-back-2" })).status).toBe(204);
			}
			expect({ how, answer: fields(await http.post("/api/auth/confirm-email-change", { token })) }).toEqual({ how, answer: ["token:invalidToken"] });
			// The owner may ask for a change of their own at once: the retired one holds nothing back (no 429 pointing to a dead link).
			if (how === "change") expect((await change(me.accessToken, { newEmail: newEmail("own"), password: "owner-took-it-back-1" })).status).toBe(202);
			expect((await http.post("/api/auth/login", { email: old, password: how === "change" ? "owner-took-it-back-1" : "owner-took-it-back-2" })).status).toBe(200);
		}
	});

	test("an address under .invalid (where deleted accounts are parked) is refused", async () => {
		const me = await register(newEmail("parker"));
		expect(fields(await change(me.accessToken, { newEmail: "deleted-6162@deleted.invalid", password: PASSWORD }))).toEqual(["newEmail:email"]);
	});

	test("an address another account registered after the link went out: 409, and the account keeps its address", async () => {
		const http = shop.http;
		const old = newEmail("keeper");
		const wanted = newEmail("wanted");
		const me = await register(old);
		expect((await change(me.accessToken, { newEmail: wanted, password: PASSWORD })).status).toBe(202);
		const token = lastMail("user.email_change_requested", wanted).changeToken;
		await register(wanted);
		const res = await http.post("/api/auth/confirm-email-change", { token });
		expect({ status: res.status, type: res.body.type }).toEqual({ status: 409, type: "EMAIL_TAKEN" });
		expect((await http.get("/api/me", { token: me.accessToken })).body.email).toBe(old);
		expect(fields(await http.post("/api/auth/confirm-email-change", { token: "A".repeat(43) }))).toEqual(["token:invalidToken"]);
	});
});
