/**
 * A password change or reset against logins still running with the old password: the session such
 * a login opens after the change is dead (its access token 401, its refresh token 401), the session
 * that made the change stays, a reset ends all. The race is driven, not waited for: a login's
 * bcrypt check of the old password completes and is then held while the change runs.
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { verifyAccessToken } from "../../lib/jwt";
import { openToken } from "../../lib/sealed-token";

/** Checks of these passwords wait, after bcrypt has answered, until the test lets them go on. */
const mockHolds = new Map<string, { reached: () => void; release: Promise<void> }>();

jest.mock("../../lib/password-policy", () => {
	const actual = jest.requireActual("../../lib/password-policy");
	return {
		...actual,
		async verifyPassword(password: string, hash: string): Promise<boolean> {
			const ok = await actual.verifyPassword(password, hash);
			const hold = mockHolds.get(password);
			if (hold) {
				mockHolds.delete(password);
				hold.reached();
				await hold.release;
			}
			return ok;
		},
	};
});

/** Holds the next check of `password` once bcrypt has answered it: `reached` when it is held, `release()` lets it go on. */
function holdNextCheck(password: string) {
	let release!: () => void;
	const released = new Promise<void>((resolve) => (release = resolve));
	const reached = new Promise<void>((resolve) => mockHolds.set(password, { reached: resolve, release: released }));
	return { reached, release };
}

const resetMails: Array<{ email: string; resetToken: string | null }> = [];
const Mailbox: ServiceSchema = {
	name: "mailbox",
	events: {
		"user.password_reset_requested"(ctx: Context<{ email: string; resetToken: string }>) {
			resetMails.push({ email: ctx.params.email, resetToken: openToken(ctx.params.resetToken) });
		},
	},
};

const OLD = "velvet-otter-42";
const NEW = "brand-new-otter-9";
let seq = 0;
const newEmail = () => `race-${Date.now().toString(36)}-${++seq}@example.com`;

jest.setTimeout(20_000);

describe("a login that checked the old password while it changed", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users", Mailbox] });
	});
	afterAll(() => shop?.stop());

	const register = async (email: string) => {
		const res = await shop.http.post("/api/auth/register", { email, password: OLD });
		expect(res.status).toBe(201);
		return res.body as { user: { id: string }; accessToken: string; refreshToken: string };
	};
	const usable = async (s: { accessToken: string; refreshToken: string }) => ({
		me: (await shop.http.get("/api/me", { token: s.accessToken })).status,
		refresh: (await shop.http.post("/api/auth/refresh", { refreshToken: s.refreshToken })).status,
	});
	/** A login whose check of the old password has run and is held until `release`. */
	const loginHeldAfterCheck = async (email: string) => {
		const hold = holdNextCheck(OLD);
		const response = shop.http.post("/api/auth/login", { email, password: OLD });
		await hold.reached;
		return { release: hold.release, response };
	};

	test("a password change: that login's session cannot be used or refreshed; the changer's own session stays", async () => {
		const email = newEmail();
		const owner = await register(email);
		const attacker = await loginHeldAfterCheck(email);

		const change = await shop.http.post("/api/me/password", { currentPassword: OLD, newPassword: NEW }, { token: owner.accessToken });
		expect(change.status).toBe(204);
		attacker.release();
		const late = await attacker.response;
		// The login went on with the password it had checked, and its session was opened after the change.
		expect(late.status).toBe(200);
		await expect(shop.broker.call("users.checkSession", { sid: verifyAccessToken(late.body.accessToken).sid })).resolves.toEqual({ active: false });
		expect(await usable(late.body)).toEqual({ me: 401, refresh: 401 });

		// The session that made the change keeps working (204, no new tokens), its refresh token too.
		expect((await shop.http.get("/api/me", { token: owner.accessToken })).status).toBe(200);
		const refreshed = await shop.http.post("/api/auth/refresh", { refreshToken: owner.refreshToken });
		expect(refreshed.status).toBe(200);
		expect((await shop.http.get("/api/me", { token: refreshed.body.accessToken })).status).toBe(200);
		// And the new password opens sessions that work.
		const fresh = await shop.http.post("/api/auth/login", { email, password: NEW });
		expect(fresh.status).toBe(200);
		expect(await usable(fresh.body)).toEqual({ me: 200, refresh: 200 });
	});

	test("a password reset: every session ends, the one that login opened after the reset too", async () => {
		const email = newEmail();
		const owner = await register(email);
		expect((await shop.http.post("/api/auth/password-reset", { email })).status).toBe(202);
		const token = resetMails.find((m) => m.email === email)!.resetToken;
		// In the session cache before the reset, which must drop it.
		expect((await shop.http.get("/api/me", { token: owner.accessToken })).status).toBe(200);
		const attacker = await loginHeldAfterCheck(email);

		expect((await shop.http.post("/api/auth/password-reset/confirm", { token, password: NEW })).status).toBe(204);
		attacker.release();
		const late = await attacker.response;
		expect(late.status).toBe(200);
		expect(await usable(late.body)).toEqual({ me: 401, refresh: 401 });
		expect(await usable(owner)).toEqual({ me: 401, refresh: 401 });
		expect((await shop.http.post("/api/auth/login", { email, password: NEW })).status).toBe(200);
	});

	test("two changes at once from one session: one is made (204), the other refused on currentPassword, and the session stays", async () => {
		const email = newEmail();
		const owner = await register(email);
		// The first change's check of the current password has run and waits while the second one is made.
		const hold = holdNextCheck(OLD);
		const first = shop.http.post("/api/me/password", { currentPassword: OLD, newPassword: "first-change-otter-1" }, { token: owner.accessToken });
		await hold.reached;
		const second = await shop.http.post("/api/me/password", { currentPassword: OLD, newPassword: "second-change-otter-2" }, { token: owner.accessToken });
		expect(second.status).toBe(204);
		hold.release();
		const late = await first;
		expect(late.status).toBe(422);
		expect(late.body.data.map((d: { field: string }) => d.field)).toEqual(["currentPassword"]);

		expect((await shop.http.get("/api/me", { token: owner.accessToken })).status).toBe(200);
		expect((await shop.http.post("/api/auth/login", { email, password: "second-change-otter-2" })).status).toBe(200);
		expect((await shop.http.post("/api/auth/login", { email, password: "first-change-otter-1" })).status).toBe(401);
	});

	test("a session stored before sessions carried a password version keeps working, unless the password changed after it was opened", async () => {
		const users = shop.broker.getLocalService("users") as any;
		const email = newEmail();
		const owner = await register(email);
		const other = (await shop.http.post("/api/auth/login", { email, password: OLD })).body;
		for (const s of [owner, other]) await users.db.user_sessions.updateOne({ id: verifyAccessToken(s.accessToken).sid }, { $unset: { passwordVersion: true } });
		await users.forgetSessions([owner, other].map((s) => verifyAccessToken(s.accessToken).sid));
		expect(await usable(owner)).toEqual({ me: 200, refresh: 200 });

		// Such a session opened before the password's last change (one a change could not revoke: its login was running).
		const { sid } = verifyAccessToken(other.accessToken);
		const user = await users.db.users.findById(owner.user.id);
		await users.db.user_sessions.updateOne({ id: sid }, { $set: { createdAt: new Date(new Date(user.passwordChangedAt).getTime() - 1000) } });
		await users.forgetSessions([sid]);
		expect(await usable(other)).toEqual({ me: 401, refresh: 401 });
	});
});
