/**
 * Accounts over HTTP: registration, login, refresh rotation with reuse detection, logout, tokens,
 * profile, password change and reset, email verification, throttling, addresses and wishlist.
 * The products service is stood in for by a fake that implements `products.getMany` as in
 * docs/services.md, and the cart by a fake `cart.merge`.
 */
import jwt from "jsonwebtoken";
import SwaggerParser from "@apidevtools/swagger-parser";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { HttpClient, type HttpResult, type RequestOptions } from "../helpers/http";
import { jwtSecret, TOKEN_AUDIENCE, TOKEN_ISSUER, verifyAccessToken } from "../../lib/jwt";
import UsersService from "../../services/users.service";
import { NotFoundError } from "../../lib/errors";
import { memoryLoginThrottleStore } from "../../adapters/login-throttle-store";
import "../../mixins/types";
import { accountMailbox } from "../helpers/fakes";

const CATALOG = [
	{ id: "p-mug", name: "Mug", slug: "mug", price: 1200, currency: "USD", image: null, isActive: true },
	{ id: "p-tee", name: "T-shirt", slug: "tee", price: 1999, currency: "USD", image: null, isActive: true },
	{ id: "p-old", name: "Archived lamp", slug: "lamp", price: 5000, currency: "USD", image: null, isActive: false },
];

const FakeProducts: ServiceSchema = {
	name: "products",
	actions: {
		getMany: {
			params: { ids: { type: "array", items: "string" } },
			handler: (ctx: Context<{ ids: string[] }>) => CATALOG.filter((p) => ctx.params.ids.includes(p.id)),
		},
	},
};

const merges: Array<{ guestCartId: string; userId: string }> = [];
const FakeCart: ServiceSchema = {
	name: "cart",
	actions: {
		merge: {
			params: { guestCartId: "string", userId: "string" },
			handler(ctx: Context<{ guestCartId: string; userId: string }>) {
				if (ctx.params.guestCartId === "broken-cart") throw new NotFoundError("Cart");
				merges.push(ctx.params);
				return { ok: true };
			},
		},
	},
};

/** What the notifications service would receive: the raw tokens travel only in these events. */
const { schema: Mailbox, events: mailbox, lastMail } = accountMailbox();

/** Keeps every response body of the suite, to prove none of them carries a hash. */
class RecordingClient extends HttpClient {
	readonly responses: Array<{ path: string; text: string; body: unknown }> = [];
	async request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResult<T>> {
		const res = await super.request<T>(method, path, opts);
		this.responses.push({ path: `${method} ${path}`, text: res.text, body: res.body });
		return res;
	}
}

const PASSWORD = "velvet-otter-42";
let seq = 0;
const newEmail = (tag = "user") => `${tag}-${Date.now().toString(36)}-${++seq}@example.com`;
const SEALED = /^sealed\.v1\.[A-Za-z0-9_-]+$/;

describe("users service over HTTP", () => {
	let shop: Shop;
	let http: RecordingClient;

	async function register(email = newEmail(), password = PASSWORD, extra: Record<string, unknown> = {}) {
		const res = await http.post("/api/auth/register", { email, password, ...extra });
		expect(res.status).toBe(201);
		return res.body as { user: any; accessToken: string; refreshToken: string };
	}
	const login = (email: string, password = PASSWORD, opts?: RequestOptions) => http.post("/api/auth/login", { email, password }, opts);
	const fields422 = (res: HttpResult) => (res.body?.data ?? []).map((d: any) => d.field);

	beforeAll(async () => {
		shop = await startShop({ services: ["users", FakeProducts, FakeCart, Mailbox] });
		http = new RecordingClient(shop.url);
	});
	afterAll(() => shop.stop());

	describe("register and login", () => {
		test("register → 201 with the user and both tokens; the email is normalised", async () => {
			const email = newEmail("Mixed").toUpperCase();
			const res = await http.post("/api/auth/register", { email: `  ${email} `, password: PASSWORD, firstName: "Ada", lastName: "Lovelace" });
			expect(res.status).toBe(201);
			expect(Object.keys(res.body.user).sort()).toEqual(["createdAt", "email", "firstName", "id", "isVerified", "lastName", "phone", "role"]);
			expect(res.body.user).toMatchObject({ email: email.toLowerCase(), firstName: "Ada", lastName: "Lovelace", role: "customer", isVerified: false });
			expect(new Date(res.body.user.createdAt).toISOString()).toBe(res.body.user.createdAt);
			expect(res.body.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
			const claims = verifyAccessToken(res.body.accessToken);
			expect(claims).toMatchObject({ sub: res.body.user.id, role: "customer", sid: expect.any(String) });
			// At least the 15 minutes answered as expiresIn (exp is in whole seconds, counted from the second rounded up).
			const left = claims.exp - Date.now() / 1000;
			expect(res.body.expiresIn).toBe(15 * 60);
			expect(left).toBeGreaterThan(15 * 60 - 5);
			expect(left).toBeLessThanOrEqual(15 * 60 + 1);
			const meRes = await http.get("/api/me", { token: res.body.accessToken });
			expect(meRes.status).toBe(200);
			expect(meRes.body).toEqual(res.body.user);
		});

		test("the same email in another case → 409", async () => {
			const email = newEmail("dup");
			await register(email);
			const res = await http.post("/api/auth/register", { email: email.toUpperCase(), password: PASSWORD });
			expect(res.status).toBe(409);
			expect(res.body.code).toBe(409);
		});

		test("the same address in another Unicode form → 409; one that would pass for another (invisible characters, mixed alphabets) → 422 on email; login finds the account in either form", async () => {
			const local = `jose${Date.now()}`;
			const composed = `${local.replace("jose", "jos\u00e9")}@example.com`;
			await register(composed);
			const decomposed = await http.post("/api/auth/register", { email: `${local.replace("jose", "jose\u0301")}@example.com`, password: PASSWORD });
			expect(decomposed.status).toBe(409);
			const fullwidth = await http.post("/api/auth/register", { email: `ｊｏｓ\u00e9${local.slice(4)}@example.com`, password: PASSWORD });
			expect(fullwidth.status).toBe(409);
			for (const email of [`${local}\u200b@example.com`, `\u0430${local}@example.com`]) {
				const res = await http.post("/api/auth/register", { email, password: PASSWORD });
				expect(res.status).toBe(422);
				expect(fields422(res)).toEqual(["email"]);
			}
			expect((await login(`${local.replace("jose", "jose\u0301")}@example.com`)).status).toBe(200);
		});

		test("an account stored before addresses were kept in one form: still found, stored again in normal form at start, and its address cannot make a second account", async () => {
			const svc = shop.broker.getLocalService("users") as any;
			const local = `rene${Date.now()}`;
			const legacy = `${local.replace("rene", "rene\u0301")}@example.com`;
			const normal = legacy.normalize("NFKC");
			// As registration stored it before: trimmed and lower case only.
			const made = await register(normal);
			await svc.db.users.updateOne({ id: made.user.id }, { $set: { email: legacy } });
			// Until the start re-stores it, typed as it was stored it still logs in and stays taken.
			expect((await login(legacy)).status).toBe(200);
			expect((await http.post("/api/auth/register", { email: legacy, password: PASSWORD })).status).toBe(409);

			expect(await svc.renormalizeStoredEmails()).toBe(1);
			expect((await svc.db.users.findById(made.user.id)).email).toBe(normal);
			expect(await svc.renormalizeStoredEmails()).toBe(0);
			expect((await login(legacy)).status).toBe(200);
			expect((await login(normal)).status).toBe(200);
			expect((await http.post("/api/auth/register", { email: normal, password: PASSWORD })).status).toBe(409);
		});

		test.each([
			["7 characters", "kq7#vLp"],
			["a common password", "password1"],
			["a common password in capitals", "QWERTY123"],
		])("%s → 422 on password", async (_label, password) => {
			const res = await http.post("/api/auth/register", { email: newEmail(), password });
			expect(res.status).toBe(422);
			expect(fields422(res)).toEqual(["password"]);
		});

		test("a bad email → 422 on email; an operator object is never a query", async () => {
			const bad = await http.post("/api/auth/register", { email: "not-an-email", password: PASSWORD });
			expect(bad.status).toBe(422);
			expect(fields422(bad)).toEqual(["email"]);
			const injected = await http.post("/api/auth/login", { email: { $gt: "" }, password: { $gt: "" } });
			expect(injected.status).toBe(422);
			expect(fields422(injected).sort()).toEqual(["email", "password"]);
			const injectedReg = await http.post("/api/auth/register", { email: { $gt: "" }, password: PASSWORD });
			expect(injectedReg.status).toBe(422);
		});

		test("a password of only spaces, or with control characters → 422 on password (register) or newPassword (change)", async () => {
			for (const password of [" ".repeat(8), "\u0000".repeat(8), "velvet\notter-42"]) {
				const res = await http.post("/api/auth/register", { email: newEmail("blank"), password });
				expect(res.status).toBe(422);
				expect(fields422(res)).toEqual(["password"]);
				expect(res.body.data[0].type).toBe("weakPassword");
			}
			const reg = await register();
			const change = await http.post("/api/me/password", { currentPassword: PASSWORD, newPassword: " ".repeat(12) }, { token: reg.accessToken });
			expect(change.status).toBe(422);
			expect(fields422(change)).toEqual(["newPassword"]);
		});

		test("wrong password and unknown email → 401 with the same message", async () => {
			const email = newEmail();
			await register(email);
			const wrong = await login(email, "not-the-password");
			const unknown = await login(newEmail("nobody"), PASSWORD);
			expect(wrong.status).toBe(401);
			expect(unknown.status).toBe(401);
			expect(unknown.body.message).toBe(wrong.body.message);
			expect(unknown.body.type).toBe(wrong.body.type);
		});

		test("login in any case and spacing of the email → 200 with a new session", async () => {
			const email = newEmail();
			const reg = await register(email);
			const res = await login(`  ${email.toUpperCase()}`);
			expect(res.status).toBe(200);
			expect(res.body.user.id).toBe(reg.user.id);
			expect(verifyAccessToken(res.body.accessToken).sid).not.toBe(verifyAccessToken(reg.accessToken).sid);
		});

		test("passwords longer than 72 bytes: every byte counts", async () => {
			const prefix = "ü".repeat(40); // 80 UTF-8 bytes, 40 characters
			const email = newEmail("long");
			await register(email, `${prefix}-the-real-one`);
			expect((await login(email, `${prefix}-an-impostor`)).status).toBe(401);
			expect((await login(email, `${prefix}-the-real-one`)).status).toBe(200);
			const max = "Zq4$".repeat(32); // 128 characters
			await register(newEmail("max"), max);
			const tooLong = await http.post("/api/auth/register", { email: newEmail(), password: max + "x" });
			expect(tooLong.status).toBe(422);
		});

		test("register and login merge a guest cart, and a failed merge does not fail them", async () => {
			const email = newEmail("cart");
			const reg = await http.post("/api/auth/register", { email, password: PASSWORD }, { headers: { "X-Cart-Id": "guest-cart-1" } });
			expect(reg.status).toBe(201);
			expect(merges).toContainEqual({ guestCartId: "guest-cart-1", userId: reg.body.user.id });
			expect((await login(email, PASSWORD, { headers: { "X-Cart-Id": "guest-cart-2" } })).status).toBe(200);
			expect(merges).toContainEqual({ guestCartId: "guest-cart-2", userId: reg.body.user.id });
			expect((await login(email, PASSWORD, { headers: { "X-Cart-Id": "broken-cart" } })).status).toBe(200);
		});

		test("user.registered carries the documented payload", async () => {
			const email = newEmail();
			const reg = await register(email, PASSWORD, { firstName: "Grace" });
			const sent = [...mailbox].reverse().find((m) => m.name === "user.registered" && m.payload.email === email)!.payload;
			// The token travels sealed: the outbox and the transporter never hold a usable one.
			expect(sent).toEqual({ userId: reg.user.id, email, firstName: "Grace", verificationToken: expect.stringMatching(SEALED), eventId: expect.any(String) });
			expect(lastMail("user.registered", email).verificationToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
			const stored = await (shop.broker.getLocalService("users") as any).outbox.findOne({ "payload.eventId": sent.eventId });
			expect(stored.payload.verificationToken).toBe(sent.verificationToken);
			expect(JSON.stringify(stored)).not.toContain(lastMail("user.registered", email).verificationToken);
		});
	});

	describe("login throttling", () => {
		test("five failures on one account → 429 with Retry-After, even with the right password", async () => {
			const email = newEmail("locked");
			await register(email);
			const statuses = [];
			for (let i = 0; i < 5; i++) statuses.push((await login(email, `wrong-guess-${i}`)).status);
			expect(statuses).toEqual([401, 401, 401, 401, 401]);
			const locked = await login(email.toUpperCase(), PASSWORD);
			expect(locked.status).toBe(429);
			expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(14 * 60);
			// Other accounts are not affected.
			const other = newEmail();
			await register(other);
			expect((await login(other)).status).toBe(200);
		});

		test("a success resets the count", async () => {
			const email = newEmail();
			await register(email);
			for (let i = 0; i < 4; i++) expect((await login(email, "wrong-guess")).status).toBe(401);
			expect((await login(email)).status).toBe(200);
			for (let i = 0; i < 4; i++) expect((await login(email, "wrong-guess")).status).toBe(401);
			expect((await login(email)).status).toBe(200);
		});

		test("the lock holds for the address the guesses came from: the owner elsewhere still signs in", async () => {
			const email = newEmail("guessed");
			await register(email);
			// The client address as the gateway puts it in ctx.meta (which address that is behind proxies is the gateway's business).
			const loginFrom = (ip: string, password: string) =>
				shop.broker.call("users.login", { email, password }, { meta: { ip } }).then(() => 200, (err) => err.code);
			for (let i = 0; i < 5; i++) expect(await loginFrom("203.0.113.7", `wrong-guess-${i}`)).toBe(401);
			expect(await loginFrom("203.0.113.7", PASSWORD)).toBe(429);
			expect(await loginFrom("198.51.100.2", PASSWORD)).toBe(200);
		});

		test("parallel guesses are all counted, also when the store answers after a round trip (Redis): five are checked, the rest 429", async () => {
			const email = newEmail("parallel");
			await register(email);
			const users = shop.broker.getLocalService("users") as any;
			const local = memoryLoginThrottleStore(users.loginFailures);
			const roundTrip = () => new Promise((r) => setTimeout(r, 5));
			// A store that, like Redis, answers each call a moment later: a count read in one call and
			// written in another would be read by every guess before any wrote it.
			const slowStore = {
				countFailure: async (key: string, now: number) => (await roundTrip(), local.countFailure(key, now)),
				del: async (key: string) => (await roundTrip(), local.del(key)),
			};
			const throttleStore = jest.spyOn(users, "throttleStore").mockReturnValue(slowStore);
			try {
				const loginFrom = (password: string) => shop.broker.call("users.login", { email, password }, { meta: { ip: "192.0.2.44" } }).then(() => 200, (err) => err.code);
				const statuses = await Promise.all(Array.from({ length: 8 }, (_, i) => loginFrom(`wrong-guess-${i}`)));
				expect(statuses.filter((s) => s === 401)).toHaveLength(5);
				expect(statuses.filter((s) => s === 429)).toHaveLength(3);
				expect(await loginFrom(PASSWORD)).toBe(429);
			} finally {
				throttleStore.mockRestore();
			}
		});

		test("unknown accounts are throttled the same way (no enumeration by 429)", async () => {
			const email = newEmail("ghost");
			for (let i = 0; i < 5; i++) expect((await login(email)).status).toBe(401);
			expect((await login(email)).status).toBe(429);
		});
	});

	describe("sessions", () => {
		test("refresh rotates; reusing the first token → 401 and the second is dead too", async () => {
			const reg = await register();
			const first = await http.post("/api/auth/refresh", { refreshToken: reg.refreshToken });
			expect(first.status).toBe(200);
			expect(first.body.refreshToken).not.toBe(reg.refreshToken);
			expect(verifyAccessToken(first.body.accessToken).sid).toBe(verifyAccessToken(reg.accessToken).sid);
			expect((await http.get("/api/me", { token: first.body.accessToken })).status).toBe(200);

			const reuse = await http.post("/api/auth/refresh", { refreshToken: reg.refreshToken });
			expect(reuse.status).toBe(401);
			expect((await http.post("/api/auth/refresh", { refreshToken: first.body.refreshToken })).status).toBe(401);
			// The whole session is revoked, its access tokens included.
			expect((await http.get("/api/me", { token: first.body.accessToken })).status).toBe(401);
		});

		test("two concurrent uses of one refresh token: one wins, the session ends", async () => {
			const reg = await register();
			const both = await Promise.all([1, 2].map(() => http.post("/api/auth/refresh", { refreshToken: reg.refreshToken })));
			const ok = both.filter((r) => r.status === 200);
			expect(ok.length).toBeLessThanOrEqual(1);
			expect(both.filter((r) => r.status === 401).length).toBeGreaterThanOrEqual(1);
			if (ok[0]) expect((await http.post("/api/auth/refresh", { refreshToken: ok[0].body.refreshToken })).status).toBe(401);
		});

		test("garbage refresh tokens → 401 (or 422 for the wrong type)", async () => {
			expect((await http.post("/api/auth/refresh", { refreshToken: "x".repeat(43) })).status).toBe(401);
			expect((await http.post("/api/auth/refresh", { refreshToken: "short" })).status).toBe(401);
			expect((await http.post("/api/auth/refresh", { refreshToken: { $ne: null } })).status).toBe(422);
		});

		test("logout → 204, and the access token answers 401 on /api/me at once", async () => {
			const reg = await register();
			const other = await login(reg.user.email);
			// The session check is cached now: logout must drop it.
			expect((await http.get("/api/me", { token: reg.accessToken })).status).toBe(200);
			const out = await http.post("/api/auth/logout", {}, { token: reg.accessToken });
			expect(out.status).toBe(204);
			expect(out.text).toBe("");
			const after = await http.get("/api/me", { token: reg.accessToken });
			expect(after.status).toBe(401);
			expect((await http.post("/api/auth/refresh", { refreshToken: reg.refreshToken })).status).toBe(401);
			// Only that session: the other login still works.
			expect((await http.get("/api/me", { token: other.body.accessToken })).status).toBe(200);
			expect((await http.post("/api/auth/logout", {})).status).toBe(401);
		});

		test("logout with an access token that has expired still ends its session; other routes refuse the token, and a forged one is refused", async () => {
			const reg = await register();
			const { sub, sid } = verifyAccessToken(reg.accessToken);
			const opts = { subject: sub, issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, algorithm: "HS256" as const };
			const expired = jwt.sign({ role: "customer", sid, exp: Math.floor(Date.now() / 1000) - 5 }, jwtSecret(), opts);
			expect((await http.get("/api/me", { token: expired })).body).toMatchObject({ code: 401, type: "TOKEN_EXPIRED" });
			const forged = jwt.sign({ role: "customer", sid, exp: Math.floor(Date.now() / 1000) - 5 }, "another-secret", opts);
			expect((await http.post("/api/auth/logout", {}, { token: forged })).body).toMatchObject({ code: 401, type: "INVALID_TOKEN" });
			expect((await http.get("/api/me", { token: reg.accessToken })).status).toBe(200);

			expect((await http.post("/api/auth/logout", {}, { token: expired })).status).toBe(204);
			// The session is over: its refresh token and its unexpired access token with it.
			expect((await http.post("/api/auth/refresh", { refreshToken: reg.refreshToken })).status).toBe(401);
			expect((await http.get("/api/me", { token: reg.accessToken })).status).toBe(401);
		});

		test("a token signed with another secret, with alg none, or expired → 401", async () => {
			const reg = await register();
			const { sub, sid } = verifyAccessToken(reg.accessToken);
			const opts = { subject: sub, issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE };
			const forged = jwt.sign({ role: "admin", sid }, "another-secret", { ...opts, algorithm: "HS256" });
			const none = jwt.sign({ role: "admin", sid, sub, iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE }, "", { algorithm: "none" } as any);
			const expired = jwt.sign({ role: "customer", sid, exp: Math.floor(Date.now() / 1000) - 5 }, jwtSecret(), { ...opts, algorithm: "HS256" });
			const otherAlg = jwt.sign({ role: "customer", sid }, jwtSecret(), { ...opts, algorithm: "HS512" });
			for (const token of [forged, none, expired, otherAlg]) {
				expect((await http.get("/api/me", { token })).status).toBe(401);
			}
			expect((await http.get("/api/me", { token: reg.accessToken })).status).toBe(200);
		});

		test("checkSession answers for live and revoked sessions, with the session's user and that user's role", async () => {
			const reg = await register();
			const { sid } = verifyAccessToken(reg.accessToken);
			await expect(shop.broker.call("users.checkSession", { sid })).resolves.toEqual({ active: true, userId: reg.user.id, role: "customer" });
			await http.post("/api/auth/logout", {}, { token: reg.accessToken });
			await expect(shop.broker.call("users.checkSession", { sid })).resolves.toEqual({ active: false });
			await expect(shop.broker.call("users.checkSession", { sid: "no-such-session" })).resolves.toEqual({ active: false });
		});
	});

	describe("role changes reach the session check at once", () => {
		const users = () => shop.broker.getLocalService("users") as any;
		const check = (sid: string) => shop.broker.call("users.checkSession", { sid });

		test("a verified account named by ADMIN_EMAIL is promoted: its sessions' cached checks say admin from then on", async () => {
			const email = newEmail("promoted");
			const reg = await register(email);
			expect((await http.post("/api/auth/verify-email", { token: lastMail("user.registered", email).verificationToken })).status).toBe(200);
			const { sid } = verifyAccessToken(reg.accessToken);
			const other = verifyAccessToken((await login(email)).body.accessToken).sid;
			// Both answers are in the cache now.
			for (const s of [sid, other]) await expect(check(s)).resolves.toMatchObject({ active: true, role: "customer" });

			await users().ensureAdmin({ ...users().cfg, adminEmail: email, adminPassword: undefined });
			for (const s of [sid, other]) await expect(check(s)).resolves.toEqual({ active: true, userId: reg.user.id, role: "admin" });

			// The customer's token is out of date, not forged: 401 TOKEN_EXPIRED, which clients answer with a
			// refresh, and the refreshed token carries the new role.
			const stale = await http.get("/api/me", { token: reg.accessToken });
			expect(stale.status).toBe(401);
			expect(stale.body.type).toBe("TOKEN_EXPIRED");
			const refreshed = await http.post("/api/auth/refresh", { refreshToken: reg.refreshToken });
			expect(refreshed.status).toBe(200);
			expect(verifyAccessToken(refreshed.body.accessToken).role).toBe("admin");
			expect((await http.get("/api/me", { token: refreshed.body.accessToken })).status).toBe(200);
		});

		test("taken over with ADMIN_PASSWORD: every session ends", async () => {
			const email = newEmail("taken");
			const reg = await register(email);
			const { sid } = verifyAccessToken(reg.accessToken);
			await expect(check(sid)).resolves.toMatchObject({ active: true, role: "customer" });
			await users().ensureAdmin({ ...users().cfg, adminEmail: email, adminPassword: "operator-chosen-77" });
			await expect(check(sid)).resolves.toEqual({ active: false });
		});
	});

	describe("names", () => {
		test.each([
			["firstName", "Eve\r\nYour account is locked. Call +1 555 0100 to unlock it."],
			["firstName", "Eve\nP.S."],
			["lastName", "Doe\u2028Second line"],
			["lastName", "Doe\u2029Paragraph"],
			["firstName", "Tab\there"],
			["lastName", "Esc\u001b[31m"],
			["firstName", "Nel\u0085x"],
			// A review shows its author's first name: an override would display "Eve\u202Egnp.exe" as "Eveexe.png".
			["firstName", "Eve\u202Egnp.exe"],
			["lastName", "Doe\u2066isolate\u2069"],
		])("a line break, control character or bidirectional override in %s → 422 naming it, at registration and in PATCH /api/me", async (field, value) => {
			const email = newEmail("names");
			const res = await http.post("/api/auth/register", { email, password: PASSWORD, [field]: value });
			expect(res.status).toBe(422);
			expect(fields422(res)).toEqual([field]);
			// The message says what is refused; the pattern's source would echo the very characters.
			expect(res.body.data[0]).not.toHaveProperty("expected");
			expect((await login(email)).status).toBe(401);

			const u = await register();
			const patched = await http.patch("/api/me", { [field]: value }, { token: u.accessToken });
			expect(patched.status).toBe(422);
			expect(fields422(patched)).toEqual([field]);
			expect((await http.get("/api/me", { token: u.accessToken })).body[field]).toBeNull();
		});

		test("names in any script, with spaces, accents and apostrophes are fine", async () => {
			const reg = await register(newEmail(), PASSWORD, { firstName: "Zoë-Anne", lastName: "O'Brien 李 Smith" });
			expect(reg.user).toMatchObject({ firstName: "Zoë-Anne", lastName: "O'Brien 李 Smith" });
			expect((await http.patch("/api/me", { firstName: "José María" }, { token: reg.accessToken })).body.firstName).toBe("José María");
		});
	});

	describe("profile", () => {
		test("PATCH /api/me applies only firstName, lastName, phone; role stays customer", async () => {
			const reg = await register();
			const res = await http.patch("/api/me", { role: "admin", email: "evil@example.com", isVerified: true, passwordHash: "x", firstName: "Jo", phone: "+15550100" }, { token: reg.accessToken });
			expect(res.status).toBe(200);
			expect(res.body).toMatchObject({ role: "customer", email: reg.user.email, isVerified: false, firstName: "Jo", phone: "+15550100" });
			const again = await http.get("/api/me", { token: reg.accessToken });
			expect(again.body).toEqual(res.body);
			expect((await login(reg.user.email)).status).toBe(200);
			const cleared = await http.patch("/api/me", { phone: null }, { token: reg.accessToken });
			expect(cleared.body.phone).toBeNull();
			expect(cleared.body.firstName).toBe("Jo");
			expect((await http.patch("/api/me", { firstName: { $set: 1 } }, { token: reg.accessToken })).status).toBe(422);
		});

		test("PATCH /me: a phone that cannot take a text (not international) → 422 on phone; one written with spaces is kept as written", async () => {
			const reg = await register();
			for (const phone of ["415-555-0100", "+1 415 555 0100 ext 2", "call me"]) {
				const res = await http.patch("/api/me", { phone }, { token: reg.accessToken });
				expect(res.status).toBe(422);
				expect(fields422(res)).toEqual(["phone"]);
			}
			expect((await http.patch("/api/me", { phone: "+1 (415) 555-0100" }, { token: reg.accessToken })).body.phone).toBe("+1 (415) 555-0100");
			expect((await http.patch("/api/me", { phone: null }, { token: reg.accessToken })).body.phone).toBeNull();
		});

		test("/api/me without a token → 401", async () => {
			expect((await http.get("/api/me")).status).toBe(401);
		});

		test("users.get gives the public user, 404 for an unknown id", async () => {
			const reg = await register();
			await expect(shop.broker.call("users.get", { id: reg.user.id })).resolves.toEqual(reg.user);
			await expect(shop.broker.call("users.get", { id: "nope" })).rejects.toMatchObject({ code: 404 });
		});
	});

	describe("password change", () => {
		test("needs the current password, applies the policy, ends the other sessions", async () => {
			const reg = await register();
			const other = (await login(reg.user.email)).body;
			expect((await http.get("/api/me", { token: other.accessToken })).status).toBe(200);
			const wrong = await http.post("/api/me/password", { currentPassword: "nope-nope", newPassword: "fresh-otter-77" }, { token: reg.accessToken });
			expect(wrong.status).toBe(422);
			expect(fields422(wrong)).toEqual(["currentPassword"]);
			const weak = await http.post("/api/me/password", { currentPassword: PASSWORD, newPassword: "iloveyou" }, { token: reg.accessToken });
			expect(weak.status).toBe(422);
			expect(fields422(weak)).toEqual(["newPassword"]);

			const ok = await http.post("/api/me/password", { currentPassword: PASSWORD, newPassword: "fresh-otter-77" }, { token: reg.accessToken });
			expect(ok.status).toBe(204);
			// The session that changed it stays; every other one is revoked.
			expect((await http.get("/api/me", { token: reg.accessToken })).status).toBe(200);
			expect((await http.get("/api/me", { token: other.accessToken })).status).toBe(401);
			expect((await http.post("/api/auth/refresh", { refreshToken: other.refreshToken })).status).toBe(401);
			expect((await login(reg.user.email)).status).toBe(401);
			expect((await login(reg.user.email, "fresh-otter-77")).status).toBe(200);
		});
	});

	describe("email verification", () => {
		test("the token works once; reused or garbage → 422", async () => {
			const email = newEmail();
			const reg = await register(email);
			const token = lastMail("user.registered", email).verificationToken;
			const res = await http.post("/api/auth/verify-email", { token });
			expect(res.status).toBe(200);
			expect(res.body.user).toMatchObject({ id: reg.user.id, isVerified: true });
			expect((await http.get("/api/me", { token: reg.accessToken })).body.isVerified).toBe(true);
			const reused = await http.post("/api/auth/verify-email", { token });
			expect(reused.status).toBe(422);
			expect(fields422(reused)).toEqual(["token"]);
			expect((await http.post("/api/auth/verify-email", { token: "A".repeat(43) })).status).toBe(422);
			expect((await http.post("/api/auth/verify-email", { token: { $ne: null } })).status).toBe(422);
		});
	});

	describe("password reset", () => {
		test("202 whether or not the email exists; an event only for a real account", async () => {
			const email = newEmail();
			const reg = await register(email, PASSWORD, { firstName: "Linus" });
			const before = mailbox.length;
			const known = await http.post("/api/auth/password-reset", { email: email.toUpperCase() });
			const unknown = await http.post("/api/auth/password-reset", { email: newEmail("nobody") });
			expect(known.status).toBe(202);
			expect(unknown.status).toBe(202);
			expect(unknown.body).toEqual(known.body);
			const sent = mailbox.slice(before).filter((m) => m.name === "user.password_reset_requested");
			expect(sent).toHaveLength(1);
			expect(sent[0].payload).toEqual({ userId: reg.user.id, email, firstName: "Linus", resetToken: expect.stringMatching(SEALED), eventId: expect.any(String) });
			expect(lastMail("user.password_reset_requested", email).resetToken).toMatch(/^[A-Za-z0-9_-]{43}$/);

			// Asked again at once (or twenty times): the same 202, but no second mail within the minute.
			const again = await Promise.all(Array.from({ length: 20 }, () => http.post("/api/auth/password-reset", { email })));
			expect(again.map((r) => r.status)).toEqual(Array(20).fill(202));
			expect(mailbox.slice(before).filter((m) => m.name === "user.password_reset_requested")).toHaveLength(1);
		});

		test("confirm works once, revokes every session, and the new password logs in", async () => {
			const email = newEmail();
			const reg = await register(email);
			const other = (await login(email)).body;
			await http.post("/api/auth/password-reset", { email });
			const token = lastMail("user.password_reset_requested", email).resetToken;
			// Both sessions are in the session cache now: the reset must drop them.
			for (const s of [reg, other]) expect((await http.get("/api/me", { token: s.accessToken })).status).toBe(200);

			const weak = await http.post("/api/auth/password-reset/confirm", { token, password: "12345678" });
			expect(weak.status).toBe(422);
			expect(fields422(weak)).toEqual(["password"]);

			const ok = await http.post("/api/auth/password-reset/confirm", { token, password: "brand-new-otter-9" });
			expect(ok.status).toBe(204);
			for (const s of [reg, other]) {
				expect((await http.get("/api/me", { token: s.accessToken })).status).toBe(401);
				expect((await http.post("/api/auth/refresh", { refreshToken: s.refreshToken })).status).toBe(401);
			}
			const reused = await http.post("/api/auth/password-reset/confirm", { token, password: "another-otter-10" });
			expect(reused.status).toBe(422);
			expect(fields422(reused)).toEqual(["token"]);
			expect((await login(email)).status).toBe(401);
			expect((await login(email, "brand-new-otter-9")).status).toBe(200);
		});

		test("two concurrent confirms with one token: exactly one succeeds", async () => {
			const email = newEmail();
			await register(email);
			await http.post("/api/auth/password-reset", { email });
			const token = lastMail("user.password_reset_requested", email).resetToken;
			const results = await Promise.all(["race-otter-one-1", "race-otter-two-2"].map((password) => http.post("/api/auth/password-reset/confirm", { token, password })));
			expect(results.map((r) => r.status).sort()).toEqual([204, 422]);
		});

		test("a newer reset link retires the older one", async () => {
			const email = newEmail("relink");
			const reg = await register(email);
			await http.post("/api/auth/password-reset", { email });
			const first = lastMail("user.password_reset_requested", email).resetToken;
			// A minute later (the cooldown, moved back here) the customer asks again.
			await (shop.broker.getLocalService("users") as any).db.users.updateOne({ id: reg.user.id }, { $set: { resetMailAt: new Date(Date.now() - 61_000) } });
			await http.post("/api/auth/password-reset", { email });
			const second = lastMail("user.password_reset_requested", email).resetToken;
			expect(second).not.toBe(first);

			const old = await http.post("/api/auth/password-reset/confirm", { token: first, password: "older-link-otter-1" });
			expect(old.status).toBe(422);
			expect(fields422(old)).toEqual(["token"]);
			expect((await http.post("/api/auth/password-reset/confirm", { token: second, password: "newer-link-otter-2" })).status).toBe(204);
			expect((await login(email, "newer-link-otter-2")).status).toBe(200);
		});

		test("a newer verification link retires the older one", async () => {
			const email = newEmail("reverify");
			const reg = await register(email);
			const first = lastMail("user.registered", email).verificationToken;
			const users = shop.broker.getLocalService("users") as any;
			const second = await users.issueUserToken(await users.db.users.findById(reg.user.id), "verify_email");
			expect((await http.post("/api/auth/verify-email", { token: first })).status).toBe(422);
			expect((await http.post("/api/auth/verify-email", { token: second })).status).toBe(200);
		});

		test("a reset unlocks a throttled account", async () => {
			const email = newEmail();
			await register(email);
			for (let i = 0; i < 5; i++) await login(email, "wrong-guess");
			expect((await login(email)).status).toBe(429);
			await http.post("/api/auth/password-reset", { email });
			const token = lastMail("user.password_reset_requested", email).resetToken;
			expect((await http.post("/api/auth/password-reset/confirm", { token, password: "unlocked-otter-5" })).status).toBe(204);
			expect((await login(email, "unlocked-otter-5")).status).toBe(200);
		});
	});

	describe("addresses", () => {
		const address = { type: "shipping", line1: "1 Infinite Loop", city: "Cupertino", state: "CA", postalCode: "95014", country: "US" };

		test("user A gets 404 for user B's address on GET, PATCH and DELETE", async () => {
			const a = await register();
			const b = await register();
			const created = await http.post("/api/me/addresses", address, { token: b.accessToken });
			expect(created.status).toBe(201);
			const id = created.body.id;
			expect((await http.get(`/api/me/addresses/${id}`, { token: a.accessToken })).status).toBe(404);
			expect((await http.patch(`/api/me/addresses/${id}`, { city: "Elsewhere" }, { token: a.accessToken })).status).toBe(404);
			expect((await http.delete(`/api/me/addresses/${id}`, { token: a.accessToken })).status).toBe(404);
			expect((await http.get("/api/me/addresses", { token: a.accessToken })).body.total).toBe(0);
			const still = await http.get(`/api/me/addresses/${id}`, { token: b.accessToken });
			expect(still.status).toBe(200);
			expect(still.body.city).toBe("Cupertino");
			await expect(shop.broker.call("users.getAddress", { userId: a.user.id, addressId: id })).rejects.toMatchObject({ code: 404 });
			await expect(shop.broker.call("users.getAddress", { userId: b.user.id, addressId: id })).resolves.toMatchObject({ id, city: "Cupertino" });
			expect((await http.delete(`/api/me/addresses/${id}`, { token: b.accessToken })).status).toBe(204);
			expect((await http.get(`/api/me/addresses/${id}`, { token: b.accessToken })).status).toBe(404);
		});

		test("one default per type", async () => {
			const u = await register();
			const post = (body: object) => http.post("/api/me/addresses", { ...address, ...body }, { token: u.accessToken });
			const s1 = (await post({})).body;
			expect(s1.isDefault).toBe(true); // the first of its type
			const b1 = (await post({ type: "billing" })).body;
			expect(b1.isDefault).toBe(true);
			const s2 = (await post({ line1: "2 Second St", isDefault: true })).body;
			expect(s2.isDefault).toBe(true);
			const s3 = (await post({ line1: "3 Third St" })).body;
			expect(s3.isDefault).toBe(false);

			const defaults = async () => {
				const rows = (await http.get("/api/me/addresses", { token: u.accessToken })).body.rows as any[];
				return rows.filter((r) => r.isDefault).map((r) => r.id).sort();
			};
			expect(await defaults()).toEqual([b1.id, s2.id].sort());
			const patched = await http.patch(`/api/me/addresses/${s3.id}`, { isDefault: true }, { token: u.accessToken });
			expect(patched.status).toBe(200);
			expect(patched.body.isDefault).toBe(true);
			expect(await defaults()).toEqual([b1.id, s3.id].sort());
			// Concurrent defaults still leave exactly one.
			await Promise.all([s1, s2, s3].map((s) => http.patch(`/api/me/addresses/${s.id}`, { isDefault: true }, { token: u.accessToken })));
			expect(await defaults()).toHaveLength(2);
			// Moving the default to the other type gives up its slot, to another shipping address.
			const current = (await defaults()).find((id) => id !== b1.id)!;
			const moved = await http.patch(`/api/me/addresses/${current}`, { type: "billing" }, { token: u.accessToken });
			expect(moved.body).toMatchObject({ type: "billing", isDefault: false });
			const after = await defaults();
			expect(after).toHaveLength(2);
			expect(after).toContain(b1.id);
			expect(after).not.toContain(current);
		});

		test("invalid addresses → 422 naming the fields; unknown fields are not stored", async () => {
			const u = await register();
			const bad = await http.post("/api/me/addresses", { ...address, type: "home", postalCode: "" }, { token: u.accessToken });
			expect(bad.status).toBe(422);
			expect(fields422(bad).sort()).toEqual(["postalCode", "type"]);
			const ok = await http.post("/api/me/addresses", { ...address, userId: "someone-else", isAdmin: true }, { token: u.accessToken });
			expect(ok.status).toBe(201);
			expect(ok.body).not.toHaveProperty("isAdmin");
			expect((await http.get(`/api/me/addresses/${ok.body.id}`, { token: u.accessToken })).status).toBe(200);

			// Null clears only what may be empty: a line2, never a city.
			const nulls = await http.patch(`/api/me/addresses/${ok.body.id}`, { type: null, line1: null, city: null, postalCode: null, country: null }, { token: u.accessToken });
			expect(nulls.status).toBe(422);
			expect(fields422(nulls).sort()).toEqual(["city", "country", "line1", "postalCode", "type"]);
			expect((await http.patch(`/api/me/addresses/${ok.body.id}`, { line2: null }, { token: u.accessToken })).status).toBe(200);
			expect((await http.get(`/api/me/addresses/${ok.body.id}`, { token: u.accessToken })).body).toMatchObject({ line1: address.line1, city: address.city, line2: null });

			// Each field is a line of a shipping label: no line breaks, control characters or bidirectional overrides.
			const lines = await http.post("/api/me/addresses", { ...address, line1: "1 Main St\nAttn: someone else", line2: "Apt\u00002", city: "Cuper\u202Etino", state: "C\tA" }, { token: u.accessToken });
			expect(lines.status).toBe(422);
			expect(fields422(lines).sort()).toEqual(["city", "line1", "line2", "state"]);
			const patched = await http.patch(`/api/me/addresses/${ok.body.id}`, { postalCode: "950\r14", country: "U\u0007S" }, { token: u.accessToken });
			expect(fields422(patched).sort()).toEqual(["country", "postalCode"]);
			// Letters of any script stay.
			expect((await http.patch(`/api/me/addresses/${ok.body.id}`, { line1: "Straße 5 · 東京都", city: "Zürich" }, { token: u.accessToken })).status).toBe(200);
		});
	});

	describe("wishlist", () => {
		test("add is idempotent, checks the product, lists products; remove → 204", async () => {
			const u = await register();
			const add = (productId: unknown) => http.post("/api/me/wishlist", { productId }, { token: u.accessToken });
			const first = await add("p-mug");
			expect(first.status).toBe(201);
			expect(first.body).toMatchObject({ productId: "p-mug", product: { id: "p-mug", name: "Mug", price: 1200 } });
			expect((await add("p-mug")).status).toBe(201);
			await Promise.all([add("p-tee"), add("p-tee")]);
			expect((await add("p-unknown")).status).toBe(404);
			expect((await add("p-old")).status).toBe(404);
			expect((await add({ $gt: "" })).status).toBe(422);

			const list = await http.get("/api/me/wishlist", { token: u.accessToken });
			expect(list.status).toBe(200);
			expect(list.body.total).toBe(2);
			expect(list.body.rows.map((r: any) => r.productId).sort()).toEqual(["p-mug", "p-tee"]);
			for (const row of list.body.rows) {
				expect(Object.keys(row).sort()).toEqual(["addedAt", "product", "productId"]);
				expect(row.product.id).toBe(row.productId);
			}
			expect((await http.delete("/api/me/wishlist/p-mug", { token: u.accessToken })).status).toBe(204);
			const after = await http.get("/api/me/wishlist", { token: u.accessToken });
			expect(after.body.rows.map((r: any) => r.productId)).toEqual(["p-tee"]);
			// Another user's list is their own.
			const v = await register();
			expect((await http.get("/api/me/wishlist", { token: v.accessToken })).body.total).toBe(0);
		});
	});

	test("the OpenAPI document validates and lists every users route", async () => {
		const res = await http.get("/api/openapi.json");
		expect(res.status).toBe(200);
		await SwaggerParser.validate(structuredClone(res.body));
		const routes = Object.entries(res.body.paths as Record<string, object>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
		const expected = [
			"POST /api/auth/register", "POST /api/auth/login", "POST /api/auth/refresh", "POST /api/auth/logout", "POST /api/auth/verify-email",
			"POST /api/auth/password-reset", "POST /api/auth/password-reset/confirm", "GET /api/me", "PATCH /api/me", "POST /api/me/password",
			"GET /api/me/addresses", "POST /api/me/addresses", "PATCH /api/me/addresses/{id}", "DELETE /api/me/addresses/{id}",
			"GET /api/me/wishlist", "POST /api/me/wishlist", "DELETE /api/me/wishlist/{productId}",
		];
		expect(routes).toEqual(expect.arrayContaining(expected));
		expect(routes.some((r) => /checkSession|getAddress|users\/get/.test(r))).toBe(false);
		// Both take a guest's cart along.
		for (const path of ["/api/auth/register", "/api/auth/login"]) {
			expect(res.body.paths[path].post.parameters).toEqual([expect.objectContaining({ name: "X-Cart-Id", in: "header", required: false })]);
		}
	});

	// Last: every response of this suite, scanned for anything hash-like.
	test("no response of the suite carries a password hash or a token hash", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const stored: string[] = [];
		for (const u of await users.db.users.find({})) stored.push(u.passwordHash);
		for (const s of await users.db.user_sessions.find({})) stored.push(s.refreshHash, ...(s.spentHashes ?? []));
		for (const t of await users.db.user_tokens.find({})) stored.push(t.tokenHash);
		expect(stored.length).toBeGreaterThan(50);
		expect(http.responses.length).toBeGreaterThan(100);

		const keysWithHash = (value: unknown, path = ""): string[] => {
			if (!value || typeof value !== "object") return [];
			return Object.entries(value).flatMap(([k, v]) => [...(/hash/i.test(k) ? [`${path}.${k}`] : []), ...keysWithHash(v, `${path}.${k}`)]);
		};
		for (const r of http.responses) {
			expect({ path: r.path, keys: keysWithHash(r.body) }).toEqual({ path: r.path, keys: [] });
			expect(r.text).not.toMatch(/\$2[aby]\$\d\d\$/);
			const leaked = stored.filter((h) => r.text.includes(h));
			expect({ path: r.path, leaked }).toEqual({ path: r.path, leaked: [] });
		}
	});
});

describe("login throttle and the response cache", () => {
	let shop: Shop;
	beforeAll(async () => {
		// The embedded cacher, as moleculer.config.ts sets it up, with a small bound so a test can fill it.
		shop = await startShop({ services: ["users", "products"], broker: { cacher: { type: "MemoryLRU", options: { max: 50, ttl: 300 } } } });
	});
	afterAll(() => shop.stop());

	test("anonymous cached listings that fill the cache do not unlock an account", async () => {
		const email = newEmail("flooded");
		expect((await shop.http.post("/api/auth/register", { email, password: PASSWORD })).status).toBe(201);
		for (let i = 0; i < 5; i++) expect((await shop.http.post("/api/auth/login", { email, password: `wrong-guess-${i}` })).status).toBe(401);
		expect((await shop.http.post("/api/auth/login", { email, password: PASSWORD })).status).toBe(429);

		// Twice the cache's bound of distinct listings, each cached by the broker cacher.
		for (let n = 0; n < 100; n++) expect((await shop.http.get(`/api/products?minPrice=${n}`)).status).toBe(200);
		const cached = await shop.broker.cacher!.getCacheKeys();
		expect(cached.length).toBeGreaterThanOrEqual(50);
		expect(cached.some((k: { key: string }) => k.key.includes("products.list"))).toBe(true);

		const after = await shop.http.post("/api/auth/login", { email, password: PASSWORD });
		expect(after.status).toBe(429);
		expect(Number(after.headers.get("retry-after"))).toBeGreaterThan(14 * 60);
	});
});

describe("users service with short-lived tokens", () => {
	let shop: Shop;
	beforeAll(async () => {
		mailbox.length = 0;
		const ShortTokens: ServiceSchema<Record<string, any>> = { name: "users", mixins: [UsersService as any], settings: { tokenTtlSeconds: { verifyEmail: 1, passwordReset: 1 } } };
		shop = await startShop({ services: [ShortTokens, FakeProducts, Mailbox] });
	});
	afterAll(() => shop.stop());

	test("expired verification and reset tokens → 422", async () => {
		const email = newEmail("expiring");
		expect((await shop.http.post("/api/auth/register", { email, password: PASSWORD })).status).toBe(201);
		await shop.http.post("/api/auth/password-reset", { email });
		const verificationToken = lastMail("user.registered", email).verificationToken;
		const resetToken = lastMail("user.password_reset_requested", email).resetToken;
		await new Promise((r) => setTimeout(r, 1200));
		const verify = await shop.http.post("/api/auth/verify-email", { token: verificationToken });
		expect(verify.status).toBe(422);
		const reset = await shop.http.post("/api/auth/password-reset/confirm", { token: resetToken, password: "late-otter-1234" });
		expect(reset.status).toBe(422);
		expect((await shop.http.post("/api/auth/login", { email, password: PASSWORD })).status).toBe(200);
	});
});
