/**
 * Accounts: registration, login, sessions, profiles. The address book and wishlist are in
 * mixins/user-address-book.mixin.ts.
 *
 * Sessions: a login opens a session (its id is the `sid` claim of every access token). Refresh
 * tokens are opaque, stored as SHA-256 hashes on the session and rotated on every use; presenting
 * a spent one revokes the session (RFC 9700 reuse detection). The gateway asks `checkSession` on
 * every authenticated request and refuses a token whose user or role is not the session's (so
 * whoever learns the signing secret still cannot make their own session an admin's); the answer is
 * cached for a minute and dropped from every node's cache when the session is revoked or its user's
 * role changes, so logout takes effect at once.
 */
import { Cachers, type Context, type ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type Collections } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import { UserAddressBookMixin } from "../mixins/user-address-book.mixin";
import { UserAdminMixin } from "../mixins/user-admin.mixin";
import type { Entity, Query } from "../mixins/collection";
import { me, type ShopMeta } from "../mixins/types";
import { logShows, readConfig, type ShopConfig } from "../lib/config";
import { jwtSecret, signAccessToken } from "../lib/jwt";
import { sealToken } from "../lib/sealed-token";
import { ConflictError, NotFoundError, TooManyRequestsError, UnauthorizedError, invalidField, isDuplicate, BusyError } from "../lib/errors";
import { hashPassword, holdBcryptWorkers, needsRehash, passwordProblem, randomPassword, unmatchableHash, verifyPassword } from "../lib/password-policy";
import {
	PASSWORD_RESET_TTL_SECONDS, SESSION_LIFETIME_SECONDS, SPENT_HASHES_KEPT, VERIFY_EMAIL_TTL_SECONDS,
	expiresIn, hashOpaqueToken, looksLikeOpaqueToken, newOpaqueToken, sessionHasCurrentPassword, sessionIsActive,
} from "../lib/refresh-tokens";
import { LoginFailureStore, attemptWaitSeconds, throttleKey } from "../lib/login-throttle";
import { cacherLoginThrottleStore, memoryLoginThrottleStore, type LoginThrottleStore } from "../adapters/login-throttle-store";
import { ERASURE_CONFLICTS, ERASURE_LEASE_MS, emailForms, emailProblem, normalizeEmail, erasedUserFields, orderingRefusal, publicUser, toE164, userCollections } from "../lib/user-records";
import { absentOr } from "../lib/store-queries";
import { ONE_LINE_TEXT } from "../lib/param-rules";

type TokenPurpose = "verify_email" | "password_reset" | "change_email";

const emailTaken = (field = "email") => new ConflictError("This email is already registered", "EMAIL_TAKEN", [{ field }]);

const MAIL_COOLDOWN_SECONDS = 60;
/** How long an erasure gives the account's running checkouts to end (see openOrdersOnceSettled): 5 s. */
const CHECKOUT_SETTLE_ATTEMPTS = 25;
const CHECKOUT_SETTLE_PAUSE_MS = 200;

/**
 * Names go into the text of account mails: a line break in one (or any other control character)
 * would let someone registering another person's address write lines of their own to that person.
 * A first name is also shown on every review its owner writes: bidirectional overrides and isolates
 * are refused there as in the review's own text (they make the rest of the line display reordered).
 */
const nameRule = (label: string) => ({
	type: "string", trim: true, max: 100, optional: true, nullable: true,
	pattern: ONE_LINE_TEXT,
	messages: { stringPattern: `${label} must not contain line breaks, control characters or bidirectional overrides` },
});
const opaqueTokenRule = { type: "string", min: 1, max: 200 };
/** The collections that hold an account's records, rewritten when it is deleted. */
const ACCOUNT_RECORDS = ["users", "user_addresses", "user_wishlist", "user_tokens", "user_sessions"] as const;
/** Register and login take the guest's cart along (mergeGuestCart). */
const MERGED_CART = { "X-Cart-Id": { description: "The guest cart to merge into the user's cart, as the last cart answer named it" } };

interface Tokens {
	accessToken: string;
	refreshToken: string;
	tokenType: "Bearer";
	expiresIn: number;
}

interface UsersThis {
	db: Collections;
	loginFailures: LoginFailureStore;
	settings: Record<string, any>;
	cfg: ShopConfig;
	cost: number;
	dummyHash: string;
	publish(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string>;
	[method: string]: any;
}

type Ctx<P = Record<string, any>> = Context<P, ShopMeta>;

/** The login throttle's key of an account's sign-ins from this request's address. */
const loginKey = (email: string, ctx: Context<unknown, ShopMeta>) => throttleKey(email, ctx.meta.ip ?? "unknown");

const UsersService: ServiceSchema<Record<string, any>, Record<string, any>, UsersThis> = {
	name: "users",
	mixins: [DbMixin("users", userCollections) as any, OutboxMixin("users"), HealthMixin, UserAddressBookMixin, UserAdminMixin],
	settings: {
		rest: "/",
		tokenTtlSeconds: { verifyEmail: VERIFY_EMAIL_TTL_SECONDS, passwordReset: PASSWORD_RESET_TTL_SECONDS },
		defaultAdminEmail: "admin@example.com",
		/** Create the default admin when no admin exists; undefined means "outside tests". */
		createDefaultAdmin: undefined,
		/** How long after the start an unused ADMIN_PASSWORD is looked for (see ensureAdmin). */
		adminPasswordCheckDelayMs: 5000,
	},

	actions: {
		register: {
			rest: "POST /auth/register",
			openapi: { success: 201, response: "AuthSession", responses: { 409: "Email already registered" }, headers: MERGED_CART },
			rateLimit: "auth",
			params: {
				$$strict: "remove",
				email: { type: "email", mode: "precise", normalize: true, max: 254 },
				password: { type: "string", max: 1024 },
				firstName: nameRule("First name"),
				lastName: nameRule("Last name"),
			},
			async handler(ctx: Ctx<{ email: string; password: string; firstName?: string | null; lastName?: string | null }>) {
				const { email, password, firstName, lastName } = ctx.params;
				const lookalike = emailProblem(email);
				if (lookalike) throw invalidField("email", lookalike, "email");
				// The unique index sees the normalised form; an account stored before in another form of it is found here.
				const forms = emailForms(email);
				if (forms.length > 1 && (await this.db.users.findOne({ email: { $in: forms } }))) throw emailTaken();
				const problem = passwordProblem(password, { email });
				if (problem) throw invalidField("password", problem, "weakPassword");
				const now = new Date();
				let user: Entity;
				try {
					user = await this.db.users.insert({
						email: normalizeEmail(email), passwordHash: await hashPassword(password, this.cost), firstName: firstName || null,
						lastName: lastName || null, phone: null, role: "customer", isVerified: false, passwordChangedAt: now, passwordVersion: 0, createdAt: now, updatedAt: now,
					});
				} catch (err) {
					if ((err as ConflictError).code === 409) throw emailTaken();
					throw err;
				}
				const verificationToken = await this.issueUserToken(user, "verify_email");
				await this.publish(ctx, "user.registered", { userId: user.id, email: user.email, firstName: user.firstName, verificationToken: sealToken(verificationToken) });
				const tokens = await this.openSession(ctx, user);
				await this.mergeGuestCart(ctx, user.id);
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/me`;
				return { user: publicUser(user), ...tokens };
			},
		},

		login: {
			rest: "POST /auth/login",
			openapi: { response: "AuthSession", responses: { 401: "Wrong email or password" }, headers: MERGED_CART },
			rateLimit: "auth",
			params: { $$strict: "remove", email: { type: "string", min: 1, max: 254 }, password: { type: "string", min: 1, max: 1024 } },
			async handler(ctx: Ctx<{ email: string; password: string }>) {
				const email = normalizeEmail(ctx.params.email);
				await this.countLoginAttempt(email, ctx);
				const user = await this.accountByEmail(ctx.params.email);
				// Unknown emails cost a bcrypt compare too, so timing does not reveal which accounts exist.
				const ok = await this.checkedPassword(email, ctx, ctx.params.password, user?.passwordHash ?? this.dummyHash);
				if (!user || !ok) throw new UnauthorizedError("Invalid email or password", "INVALID_CREDENTIALS");
				await this.clearLoginFailures(email, ctx);
				if (needsRehash(user.passwordHash, this.cost)) {
					// Not worth refusing a correct password for: at a busy moment the next sign-in upgrades it.
					const upgraded = await hashPassword(ctx.params.password, this.cost).catch((err) => (err instanceof BusyError ? null : Promise.reject(err)));
					if (upgraded) await this.db.users.updateOne({ id: user.id, passwordHash: user.passwordHash }, { $set: { passwordHash: upgraded } });
				}
				const tokens = await this.openSession(ctx, user);
				await this.mergeGuestCart(ctx, user.id);
				return { user: publicUser(user), ...tokens };
			},
		},

		refresh: {
			rest: "POST /auth/refresh",
			openapi: { response: "AuthTokens", responses: { 401: "Invalid, spent or revoked refresh token" } },
			rateLimit: "auth",
			params: { $$strict: "remove", refreshToken: opaqueTokenRule },
			async handler(ctx: Ctx<{ refreshToken: string }>) {
				const invalid = () => new UnauthorizedError("Invalid refresh token", "INVALID_REFRESH_TOKEN");
				if (!looksLikeOpaqueToken(ctx.params.refreshToken)) throw invalid();
				const hash = hashOpaqueToken(ctx.params.refreshToken);
				const session = await this.db.user_sessions.findOne({ refreshHash: hash });
				if (!session) {
					const spentIn = await this.db.user_sessions.findOne({ spentHashes: hash });
					if (spentIn) {
						this.logger.warn(`Refresh token reuse on session ${spentIn.id} (user ${spentIn.userId}): session revoked`);
						await this.revokeSessions({ id: spentIn.id }, "refresh_token_reuse");
					}
					throw invalid();
				}
				if (!sessionIsActive(session)) throw invalid();
				const user = await this.db.users.findById(session.userId);
				// Opened under a password that has changed since (a login that raced the change): as revoked.
				if (!user || !sessionHasCurrentPassword(session, user)) throw invalid();
				const refreshToken = newOpaqueToken();
				// Compare-and-swap on the current hash: of two concurrent uses of one token, one wins and
				// the other is a reuse, which revokes the session.
				const rotated = await this.db.user_sessions.updateOne(
					{ id: session.id, refreshHash: hash, revokedAt: null },
					{ $set: { refreshHash: hashOpaqueToken(refreshToken), lastUsedAt: new Date() }, $push: { spentHashes: { $each: [hash], $slice: -SPENT_HASHES_KEPT } } },
				);
				if (!rotated) {
					await this.revokeSessions({ id: session.id }, "refresh_token_reuse");
					throw invalid();
				}
				return this.tokensFor(user, session.id, refreshToken);
			},
		},

		logout: {
			rest: "POST /auth/logout",
			openapi: { success: 204 },
			auth: "required",
			// A client signing out whose access token has just expired still ends the session.
			acceptsExpiredToken: true,
			params: {},
			async handler(ctx: Ctx) {
				await this.revokeSessions({ id: me(ctx).sid }, "logout");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		verifyEmail: {
			rest: "POST /auth/verify-email",
			openapi: { response: "UserAnswer" },
			rateLimit: "auth",
			params: { $$strict: "remove", token: opaqueTokenRule },
			async handler(ctx: Ctx<{ token: string }>) {
				const record = await this.consumeUserToken(ctx.params.token, "verify_email");
				const user = await this.db.users.updateOne({ id: record.userId, email: record.email }, { $set: { isVerified: true, updatedAt: new Date() } });
				if (!user) throw invalidField("token", "Invalid or expired token", "invalidToken");
				return { user: publicUser(user) };
			},
		},

		requestPasswordReset: {
			rest: "POST /auth/password-reset",
			openapi: { success: 202, response: "Accepted" },
			rateLimit: "auth",
			params: { $$strict: "remove", email: { type: "string", max: 254 } },
			async handler(ctx: Ctx<{ email: string }>) {
				const user = await this.accountByEmail(ctx.params.email);
				if (user && (await this.claimMailSlot(user.id, "resetMailAt")) === 0) {
					const resetToken = await this.issueUserToken(user, "password_reset");
					await this.publish(ctx, "user.password_reset_requested", { userId: user.id, email: user.email, firstName: user.firstName, resetToken: sealToken(resetToken) });
				}
				// The same answer whether or not the account exists: no enumeration.
				ctx.meta.$statusCode = 202;
				return { accepted: true };
			},
		},

		confirmPasswordReset: {
			rest: "POST /auth/password-reset/confirm",
			openapi: { success: 204 },
			rateLimit: "auth",
			params: { $$strict: "remove", token: opaqueTokenRule, password: { type: "string", max: 1024 } },
			async handler(ctx: Ctx<{ token: string; password: string }>) {
				const pending = await this.findUsableToken(ctx.params.token, "password_reset");
				const problem = pending && passwordProblem(ctx.params.password, { email: pending.email });
				// Checked before the token is spent, so a refused password does not burn the link.
				if (problem) throw invalidField("password", problem, "weakPassword");
				const record = await this.consumeUserToken(ctx.params.token, "password_reset");
				await this.setPassword(record.userId, ctx.params.password, { isVerified: true });
				await this.revokeSessions({ userId: record.userId }, "password_reset");
				await this.clearLoginFailures(record.email, ctx);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		me: {
			rest: "GET /me",
			openapi: { response: "User" },
			auth: "required",
			params: {},
			async handler(ctx: Ctx) {
				return publicUser(await this.requireUser(me(ctx).id));
			},
		},

		updateMe: {
			rest: "PATCH /me",
			openapi: { response: "User" },
			auth: "required",
			// role, email, isVerified and anything else are dropped by $$strict before the handler runs.
			params: { $$strict: "remove", firstName: nameRule("First name"), lastName: nameRule("Last name"), phone: { type: "string", trim: true, max: 32, optional: true, nullable: true } },
			async handler(ctx: Ctx<{ firstName?: string | null; lastName?: string | null; phone?: string | null }>) {
				// Texts go to international (E.164) numbers only: a number that cannot take one is refused now,
				// rather than kept and never texted without a word. Stored as written.
				const { phone } = ctx.params;
				if (phone && !toE164(phone)) throw invalidField("phone", "The phone number must be in international form: + and the country code, such as +14155550100", "phone");
				const $set: Record<string, unknown> = { updatedAt: new Date() };
				for (const f of ["firstName", "lastName", "phone"] as const) if (ctx.params[f] !== undefined) $set[f] = ctx.params[f] || null;
				const user = await this.db.users.updateOne({ id: me(ctx).id }, { $set });
				if (!user) throw new NotFoundError("User");
				return publicUser(user);
			},
		},

		changePassword: {
			rest: "POST /me/password",
			openapi: { success: 204 },
			auth: "required",
			params: { $$strict: "remove", currentPassword: { type: "string", min: 1, max: 1024 }, newPassword: { type: "string", max: 1024 } },
			async handler(ctx: Ctx<{ currentPassword: string; newPassword: string }>) {
				const user = await this.requireUser(me(ctx).id);
				await this.checkOwnPassword(ctx, user, ctx.params.currentPassword, "currentPassword");
				const problem = passwordProblem(ctx.params.newPassword, { email: user.email });
				if (problem) throw invalidField("newPassword", problem, "weakPassword");
				// The current session stays (the contract answers 204, no new tokens): it moves to the new
				// password version before the user does, so no check ever finds it on the old one.
				await this.db.user_sessions.updateOne({ id: me(ctx).sid, revokedAt: null }, { $set: { passwordVersion: (user.passwordVersion ?? 0) + 1 } });
				// Only over the password just checked: a change or reset that landed meanwhile stands.
				if (!(await this.setPassword(user.id, ctx.params.newPassword, {}, user.passwordHash))) {
					throw invalidField("currentPassword", "Current password is incorrect", "wrongPassword");
				}
				// Every other session ends.
				await this.revokeSessions({ userId: user.id, id: { $ne: me(ctx).sid } }, "password_change");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/**
		 * A new email address, confirmed from its own mailbox: the link goes there, and the address
		 * changes only when it is opened (confirmEmailChange). The password is asked, as a stolen access
		 * token must not move the account (and its password resets) to another mailbox.
		 */
		requestEmailChange: {
			rest: "POST /me/email",
			openapi: { success: 202, response: "Accepted", responses: { 409: "Email already registered" } },
			auth: "required",
			params: { $$strict: "remove", newEmail: { type: "email", mode: "precise", normalize: true, max: 254 }, password: { type: "string", min: 1, max: 1024 } },
			async handler(ctx: Ctx<{ newEmail: string; password: string }>) {
				const user = await this.requireUser(me(ctx).id);
				await this.checkOwnPassword(ctx, user, ctx.params.password, "password");
				const lookalike = emailProblem(ctx.params.newEmail);
				if (lookalike) throw invalidField("newEmail", lookalike, "email");
				const email = normalizeEmail(ctx.params.newEmail);
				if (email === user.email) throw invalidField("newEmail", "This is the account's email address already", "sameEmail");
				if (await this.db.users.findOne({ email: { $in: emailForms(email) } })) throw emailTaken("newEmail");
				const wait = await this.claimMailSlot(user.id, "changeMailAt");
				if (wait) throw new TooManyRequestsError(wait, `A confirmation went out less than a minute ago: open it, or ask again in ${wait} s`);
				const changeToken = await this.issueUserToken(user, "change_email", email);
				await this.publish(ctx, "user.email_change_requested", { userId: user.id, email, firstName: user.firstName, changeToken: sealToken(changeToken) });
				ctx.meta.$statusCode = 202;
				return { accepted: true };
			},
		},

		/**
		 * The link of requestEmailChange, opened: the account takes the new address (verified, as the link
		 * reached it), every link mailed to the old one stops working, and the old address is told.
		 */
		confirmEmailChange: {
			rest: "POST /auth/confirm-email-change",
			openapi: { response: "UserAnswer", responses: { 409: "The address was registered by another account meanwhile" } },
			rateLimit: "auth",
			params: { $$strict: "remove", token: opaqueTokenRule },
			async handler(ctx: Ctx<{ token: string }>) {
				const pending = await this.findUsableToken(ctx.params.token, "change_email");
				const user = pending && (await this.db.users.findById(pending.userId));
				if (!pending || !user || user.deletedAt) throw invalidField("token", "Invalid or expired token", "invalidToken");
				if (await this.db.users.findOne({ email: { $in: emailForms(pending.email) }, id: { $ne: user.id } })) throw emailTaken("token");
				const record = await this.consumeUserToken(ctx.params.token, "change_email");
				const now = new Date();
				let changed: Entity | null;
				try {
					changed = await this.db.users.updateOne({ id: user.id, email: user.email }, { $set: { email: record.email, isVerified: true, updatedAt: now } });
				} catch (err) {
					if ((err as ConflictError).code === 409) throw emailTaken("token");
					throw err;
				}
				if (!changed) throw invalidField("token", "Invalid or expired token", "invalidToken");
				// A verification or reset link mailed to the old address must not work any more.
				await this.db.user_tokens.updateMany({ userId: user.id, usedAt: null }, { $set: { usedAt: now } });
				await this.publish(ctx, "user.email_changed", { userId: user.id, email: user.email, newEmail: record.email, firstName: user.firstName });
				return { user: publicUser(changed) };
			},
		},

		/**
		 * The customer erases their account (the right to erasure), confirming with the password. The
		 * other services' copies go first, each idempotent (the cart, the reviews written): a failure there
		 * answers 503 and leaves the account to try again. Then the account's own records: addresses,
		 * wishlist, tokens and sessions gone, the profile blanked under a placeholder email (which frees
		 * the address); the messages kept go on the durable user.deleted. Orders stay, tied to the
		 * account's id: the shop must keep them.
		 */
		deleteMe: {
			// A POST: the password travels in a body, which OpenAPI 3.0 tools leave out of a DELETE.
			rest: "POST /me/delete",
			openapi: { success: 204, responses: { 409: ERASURE_CONFLICTS } },
			auth: "required",
			params: { $$strict: "remove", password: { type: "string", min: 1, max: 1024 } },
			async handler(ctx: Ctx<{ password: string }>) {
				const user = await this.requireUser(me(ctx).id);
				await this.checkOwnPassword(ctx, user, ctx.params.password, "password");
				await this.eraseAccount(ctx, user);
				this.logger.info(`Account ${user.id} deleted by its owner.`);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		// Internal actions (docs/services.md § users)

		checkSession: {
			visibility: "public",
			params: { sid: "string" },
			cache: { keys: ["sid"], ttl: 60 },
			async handler(ctx: Context<{ sid: string }>) {
				const session = await this.db.user_sessions.findById(ctx.params.sid);
				const user = sessionIsActive(session) ? await this.db.users.findById(session!.userId) : null;
				// The owner and the role as they are now: the gateway holds the token's claims against them.
				// A session opened under a password changed since (a login that raced the change) is as revoked.
				return user && sessionHasCurrentPassword(session!, user) ? { active: true, userId: user.id, role: user.role } : { active: false };
			},
		},

		get: {
			visibility: "public",
			params: { id: "string" },
			async handler(ctx: Context<{ id: string }>) {
				return publicUser(await this.requireUser(ctx.params.id));
			},
		},

		/**
		 * Asked by a checkout once its order is stored, and by a review once it is stored: refused (409
		 * ACCOUNT_CLOSED) when the account is gone or being erased. An erasure marks the account before it
		 * looks for open orders and the author's reviews, so of a write and an erasure that overlap, one
		 * always sees the other.
		 */
		checkCanOrder: {
			visibility: "public",
			params: { userId: "string" },
			async handler(ctx: Context<{ userId: string }>) {
				const refusal = orderingRefusal(await this.db.users.findById(ctx.params.userId), new Date());
				if (refusal) throw new ConflictError(refusal, "ACCOUNT_CLOSED");
				return true;
			},
		},
	},

	events: {
		// Another users node revoked sessions or changed their user's role: drop them from this node's cache too (memory cachers).
		async "users.sessions_revoked"(ctx: Context<{ sids: string[] }>) {
			await this.forgetSessions(ctx.params.sids);
		},
	},

	methods: {
		/** The account an email address signs in to; none for a deleted one, whose placeholder address opens nothing. */
		async accountByEmail(email: string): Promise<Entity | null> {
			const user = await this.db.users.findOne({ email: { $in: emailForms(email) } });
			return user && !user.deletedAt ? user : null;
		},

		async requireUser(id: string): Promise<Entity> {
			const user = await this.db.users.findById(id);
			// A deleted account is kept under its id (orders point to it), for no one to reach.
			if (!user || user.deletedAt) throw new NotFoundError("User");
			return user;
		},

		/**
		 * Sets the password and raises its version, which ends every session opened under the old one,
		 * also one whose login is still running. With `overHash`, only while that is still the stored
		 * hash; null when it is not (or the user is gone).
		 */
		async setPassword(userId: string, password: string, extra: Record<string, unknown> = {}, overHash?: string): Promise<Entity | null> {
			const passwordHash = await hashPassword(password, this.cost);
			const now = new Date();
			const query = overHash === undefined ? { id: userId } : { id: userId, passwordHash: overHash };
			// changeMailAt: the email change retired below no longer holds back a new one (the 429 would point to a dead link).
			const user = await this.db.users.updateOne(query, { $set: { passwordHash, passwordChangedAt: now, updatedAt: now, changeMailAt: null, ...extra }, $inc: { passwordVersion: 1 } });
			if (!user) return null;
			// Outstanding reset links and email changes die with the old password: whoever asked for a change of
			// address may have known only the old one, and would take the account with it.
			await this.db.user_tokens.updateMany({ userId, purpose: { $in: ["password_reset", "change_email"] }, usedAt: null }, { $set: { usedAt: now } });
			return user;
		},

		async openSession(ctx: Ctx, user: Entity): Promise<Tokens> {
			const refreshToken = newOpaqueToken();
			const now = new Date();
			// Bound to the password version `user` was read with, before its password was checked: if the
			// password changed since, the session is dead from the start (sessionHasCurrentPassword).
			const session = await this.db.user_sessions.insert({
				userId: user.id, refreshHash: hashOpaqueToken(refreshToken), spentHashes: [], ip: ctx.meta.ip ?? null, passwordVersion: user.passwordVersion ?? 0,
				createdAt: now, lastUsedAt: now, expiresAt: expiresIn(SESSION_LIFETIME_SECONDS, now), revokedAt: null,
			});
			return this.tokensFor(user, session.id, refreshToken);
		},

		tokensFor(user: Entity, sid: string, refreshToken: string): Tokens {
			const accessToken = signAccessToken({ sub: user.id, role: user.role, sid }, this.cfg.jwtTtlSeconds);
			return { accessToken, refreshToken, tokenType: "Bearer", expiresIn: this.cfg.jwtTtlSeconds };
		},

		/** Revokes the active sessions matching `query` and drops them from every node's session cache. */
		async revokeSessions(query: Query, reason: string): Promise<number> {
			// A unique timestamp marks this revocation, so the revoked ids are found after one update.
			const at = new Date();
			const count = await this.db.user_sessions.updateMany({ ...query, revokedAt: null }, { $set: { revokedAt: at, revokedReason: reason } });
			if (!count) return 0;
			const sids = (await this.db.user_sessions.find({ ...query, revokedAt: at }, { fields: ["id"] })).map((s) => s.id);
			await this.forgetSessionsEverywhere(sids);
			return count;
		},

		/** Gives the user another role; their sessions' cached checks, which carry the role, go. */
		async changeRole(userId: string, role: "customer" | "admin") {
			await this.db.users.updateOne({ id: userId }, { $set: { role, updatedAt: new Date() } });
			const sids = (await this.db.user_sessions.find({ userId, revokedAt: null }, { fields: ["id"] })).map((s) => s.id);
			await this.forgetSessionsEverywhere(sids);
		},

		async forgetSessionsEverywhere(sids: string[]) {
			if (!sids.length) return;
			await this.forgetSessions(sids);
			await this.broker.broadcast("users.sessions_revoked", { sids }, { groups: ["users"] });
		},

		async forgetSessions(sids: string[]) {
			const cacher = this.broker.cacher;
			if (!cacher || !sids?.length) return;
			const keys = sids.map((sid) => cacher.getCacheKey({ name: `${this.fullName}.checkSession` } as any, { keys: ["sid"] }, { params: { sid }, meta: {} } as any));
			await cacher.del(keys);
		},

		/**
		 * Erases an account, its owner's or an admin's wish (the caller checked who asks): refused for an
		 * admin and while one of its orders is under way; see deleteMe for the order of the steps.
		 */
		async eraseAccount(ctx: Ctx, user: Entity) {
			// Staff are made customers first (PATCH /api/users/:id/role, by another admin): the shop keeps an admin.
			if (user.role === "admin") throw new ConflictError("An admin account cannot be deleted: another admin makes it a customer account first", "ADMIN_ACCOUNT");
			// Marked before the orders are looked at: a checkout that stores its order after this is refused
			// (checkCanOrder), and one that stored it before is among the open orders. One erasure at a time:
			// a second one refused would otherwise clear the mark under the first.
			const now = new Date();
			const closingUntil = new Date(now.getTime() + ERASURE_LEASE_MS);
			const marked = await this.db.users.updateOne(
				{ id: user.id, ...absentOr("closingUntil", { $lte: now }) },
				{ $set: { closingUntil } },
			);
			if (!marked) throw new ConflictError("Another deletion of this account is under way: try again in a moment", "ERASURE_IN_PROGRESS");
			try {
				const open = await this.openOrdersOnceSettled(ctx, user.id);
				if (open.length) {
					throw new ConflictError("Orders are still under way: the account can be deleted once they are delivered or cancelled", "ORDERS_OPEN", { orders: open });
				}
				await ctx.call("cart.forgetUser", { userId: user.id });
				await ctx.call("reviews.forgetAuthor", { userId: user.id });
			} catch (err) {
				// Not erased: the customer may order again (or the mark lapses by itself).
				await this.db.users.updateOne({ id: user.id, closingUntil }, { $set: { closingUntil: null } }).catch((e: unknown) => this.logger.warn(`Account ${user.id}: clearing its erasure mark failed; it lapses by itself:`, e));
				throw err;
			}
			const forgetOwned = async () => {
				for (const name of ["user_addresses", "user_wishlist", "user_tokens"] as const) await this.db[name].removeMany({ userId: user.id });
			};
			await forgetOwned();
			// From here on the password opens nothing, and the sessions fail their password check too.
			await this.db.users.updateOne({ id: user.id }, { $set: erasedUserFields(user, new Date(), unmatchableHash(this.cost)) });
			// Revoked first, so that every node drops them from its session cache; then gone, with the addresses they came from.
			await this.revokeSessions({ userId: user.id }, "account_deleted");
			await this.db.user_sessions.removeMany({ userId: user.id });
			// A request that passed its session check before the revocation may have written since the first
			// pass (an add to the cart while this ran left a cart behind): once more, now that none can start.
			// The account is erased by now: a failure here is logged, not answered (the cart lapses in 7 days).
			await ctx.call("cart.forgetUser", { userId: user.id }).catch((e: unknown) => this.logger.warn(`Account ${user.id}: forgetting a cart written during its erasure failed; it expires by itself:`, e));
			await forgetOwned();
			// Durable: notifications drop the messages kept for the account whenever they read it, also
			// those of an email change or reset asked while this ran (they are not sent either).
			await this.publish(ctx, "user.deleted", { userId: user.id });
			// The embedded files keep overwritten and removed versions until they are rewritten: now.
			for (const name of ACCOUNT_RECORDS) await this.db[name].compact();
			// The account events kept for their consumers (7 days) no longer name the person or carry a link.
			await this.scrubOutbox({ userId: user.id }, ["email", "firstName", "newEmail", "verificationToken", "resetToken", "changeToken"]);
		},

		/**
		 * The account's orders not yet delivered or cancelled, once the checkouts still running have had a
		 * few seconds to end: those that stored their order before the mark see it and cancel themselves,
		 * and must not make the erasure they give way to refuse.
		 */
		async openOrdersOnceSettled(ctx: Ctx, userId: string): Promise<Array<{ id: string; number: string; status: string }>> {
			for (let attempt = 0; ; attempt++) {
				const open = await ctx.call<Array<{ id: string; number: string; status: string; checkingOut?: boolean }>, { userId: string }>("orders.openOrdersOf", { userId });
				if (!open.some((o) => o.checkingOut) || attempt >= CHECKOUT_SETTLE_ATTEMPTS) return open.map(({ id, number, status }) => ({ id, number, status }));
				await new Promise((resolve) => setTimeout(resolve, CHECKOUT_SETTLE_PAUSE_MS));
			}
		},

		/**
		 * One mail of a kind a minute per account (a reset, an email change's confirmation), claimed by one
		 * conditional update on its `field`: the routes must not become a way to flood someone's inbox.
		 * 0 when claimed; else the seconds until the next may go (for Retry-After).
		 */
		async claimMailSlot(userId: string, field: "resetMailAt" | "changeMailAt"): Promise<number> {
			const now = new Date();
			const cutoff = new Date(now.getTime() - MAIL_COOLDOWN_SECONDS * 1000);
			if (await this.db.users.updateOne({ id: userId, ...absentOr(field, { $lt: cutoff }) }, { $set: { [field]: now } })) return 0;
			const last = (await this.db.users.findById(userId))?.[field];
			const left = last instanceof Date ? last.getTime() + MAIL_COOLDOWN_SECONDS * 1000 - now.getTime() : 0;
			return Math.min(MAIL_COOLDOWN_SECONDS, Math.max(1, Math.ceil(left / 1000)));
		},

		/** A one-time token for the account, for `email` (the account's own, or the address it is moving to). */
		async issueUserToken(user: Entity, purpose: TokenPurpose, email: string = user.email): Promise<string> {
			const token = newOpaqueToken();
			const ttl = purpose === "password_reset" ? this.settings.tokenTtlSeconds.passwordReset : this.settings.tokenTtlSeconds.verifyEmail;
			const now = new Date();
			// Only the newest link works: the ones mailed before it end now. Two issues for one account
			// do not run at once (a reset mail is claimed once a minute; a verification goes at registration).
			await this.db.user_tokens.updateMany({ userId: user.id, purpose, usedAt: null }, { $set: { usedAt: now } });
			await this.db.user_tokens.insert({ purpose, userId: user.id, email, tokenHash: hashOpaqueToken(token), expiresAt: expiresIn(ttl, now), usedAt: null, createdAt: now });
			return token;
		},

		findUsableToken(token: string, purpose: TokenPurpose): Promise<Entity | null> {
			if (!looksLikeOpaqueToken(token)) return Promise.resolve(null);
			return this.db.user_tokens.findOne({ tokenHash: hashOpaqueToken(token), purpose, usedAt: null, expiresAt: { $gt: new Date() } });
		},

		/** Spends a token in one conditional update: of two concurrent uses, only one succeeds. */
		async consumeUserToken(token: string, purpose: TokenPurpose): Promise<Entity> {
			const now = new Date();
			const record = looksLikeOpaqueToken(token)
				? await this.db.user_tokens.updateOne({ tokenHash: hashOpaqueToken(token), purpose, usedAt: null, expiresAt: { $gt: now } }, { $set: { usedAt: now } })
				: null;
			if (!record) throw invalidField("token", "Invalid or expired token", "invalidToken");
			return record;
		},

		/**
		 * A signed-in user's password, asked again before a change that matters (a new password or email
		 * address, the account's deletion): a stolen access token must not become a password oracle, so
		 * the same throttle as login. A wrong one is a 422 on `field`.
		 */
		async checkOwnPassword(ctx: Context<unknown, ShopMeta>, user: Entity, password: string, field: string) {
			await this.countLoginAttempt(user.email, ctx);
			if (!(await this.checkedPassword(user.email, ctx, password, user.passwordHash))) throw invalidField(field, field === "currentPassword" ? "Current password is incorrect" : "Password is incorrect", "wrongPassword");
			await this.clearLoginFailures(user.email, ctx);
		},

		/**
		 * Counts the attempt as a failure before the password is checked (and forgets it on success),
		 * so parallel guesses cannot all slip through while bcrypt runs. Counted in one step of the
		 * store: a read then a write let parallel guesses all read the same count.
		 */
		async countLoginAttempt(email: string, ctx: Context<unknown, ShopMeta>) {
			const now = Date.now();
			const counted = await this.throttleStore().countFailure(loginKey(email, ctx), now);
			const wait = attemptWaitSeconds(counted, now);
			if (wait > 0) throw new TooManyRequestsError(wait, "Too many failed attempts; try again later");
		},

		/**
		 * verifyPassword for an attempt countLoginAttempt counted: one refused before its password was
		 * checked (bcrypt busy: 503, "nothing was done") is taken back, or five busy moments locked the
		 * owner out for 15 minutes with the right password.
		 */
		async checkedPassword(email: string, ctx: Context<unknown, ShopMeta>, password: string, hash: string): Promise<boolean> {
			try {
				return await verifyPassword(password, hash);
			} catch (err) {
				await this.throttleStore()
					.uncountFailure(loginKey(email, ctx), Date.now())
					.catch((e: Error) => this.logger.warn(`Taking back a sign-in attempt refused as busy failed: ${e.message}`));
				throw err;
			}
		},

		async clearLoginFailures(email: string, ctx: Context<unknown, ShopMeta>) {
			await this.throttleStore().del(loginKey(email, ctx));
		},

		/**
		 * Redis, shared by every node, when the cacher is Redis. Otherwise this process's own bounded
		 * store: in the memory LRU cacher, anonymous cached GETs would push a lock out.
		 */
		throttleStore(): LoginThrottleStore {
			const cacher = this.broker.cacher;
			// Redis down: login fails closed, fast (503), rather than letting guesses through uncounted.
			if (cacher instanceof Cachers.Redis) return cacherLoginThrottleStore(cacher);
			return memoryLoginThrottleStore(this.loginFailures);
		},

		async mergeGuestCart(ctx: Ctx, userId: string) {
			if (!ctx.meta.cartId) return;
			try {
				await ctx.call("cart.merge", { guestCartId: ctx.meta.cartId, userId }, { retries: 0, timeout: 5000 });
			} catch (err) {
				// The login is what the customer asked for; a cart that failed to merge stays a guest cart.
				this.logger.warn(`Guest cart merge failed for user ${userId}: ${(err as Error).message}`);
			}
		},

		/**
		 * Accounts stored before addresses were kept in NFKC are stored again in that form, so the same
		 * address typed either way finds them and cannot make a second one. Only non-ASCII addresses can
		 * differ, so only those are read; after the first start none differs. An address whose normal
		 * form another account holds already is left as it is, with a warning.
		 */
		async renormalizeStoredEmails(): Promise<number> {
			// The range as characters, not `\u` escapes, which MongoDB's regular expressions do not read.
			const candidates = await this.db.users.find({ email: { $regex: new RegExp("[\u0080-\uffff]") } }, { fields: ["id", "email"] });
			let moved = 0;
			for (const u of candidates) {
				const email = normalizeEmail(u.email);
				if (email === u.email) continue;
				try {
					if (await this.db.users.updateOne({ id: u.id, email: u.email }, { $set: { email, updatedAt: new Date() } })) moved++;
				} catch (err) {
					if (!isDuplicate(err)) throw err;
					this.logger.warn(`Account ${u.id}: its email address, normalised, is another account's; left as it was`);
				}
			}
			if (moved) this.logger.info(`Stored the email address of ${moved} account(s) in its normal form.`);
			return moved;
		},

		/**
		 * ADMIN_EMAIL (+ ADMIN_PASSWORD) creates or promotes that admin. Without it, outside tests, the
		 * first start creates admin@example.com, with ADMIN_PASSWORD when set, else a random password
		 * printed once. A password that is not used (the account exists) is said so in the log; with
		 * `warnLater` (the start) that check, a bcrypt compare of ~0.3 s on every restart, runs a few
		 * seconds after every service has started, not while the start and its first requests wait.
		 */
		async ensureAdmin(config?: ShopConfig, opts: { warnLater?: boolean } = {}): Promise<void> {
			const cfg = config ?? this.cfg;
			const report = (admin: Entity | null, why: string) =>
				(opts.warnLater ? this.reportUnusedAdminPasswordLater : this.reportUnusedAdminPassword)(admin, cfg.adminPassword, why);
			const createDefault = this.settings.createDefaultAdmin ?? !cfg.isTest;
			const email: string = cfg.adminEmail ? normalizeEmail(cfg.adminEmail) : this.settings.defaultAdminEmail;
			const problem = cfg.adminPassword ? passwordProblem(cfg.adminPassword, { email }) : null;
			if (problem) throw new Error(`ADMIN_PASSWORD refused: ${problem}`);
			if (cfg.adminEmail) {
				const existing = await this.db.users.findOne({ email });
				if (!existing) return this.createAdmin(email, cfg.adminPassword);
				if (existing.role !== "admin") return this.promoteToAdmin(existing, cfg.adminPassword);
				return report(existing, `${email} is an admin already`);
			}
			if (!createDefault) return;
			const existing = await this.db.users.findOne({ email });
			if ((await this.db.users.count({ role: "admin" })) > 0) {
				return report(existing?.role === "admin" ? existing : null, "ADMIN_EMAIL is unset and an admin exists already");
			}
			// Never promote someone else's account that happens to use the default address.
			if (existing) return report(null, `ADMIN_EMAIL is unset and ${email} is a customer's account, not promoted`);
			await this.createAdmin(email, cfg.adminPassword);
		},

		/**
		 * ADMIN_PASSWORD is used only when the admin's account is created or taken over: otherwise the
		 * operator who set it is told, unless it is that admin's password already (a restart).
		 */
		async reportUnusedAdminPassword(admin: Entity | null, password: string | undefined, why: string) {
			if (!password || (admin && (await verifyPassword(password, admin.passwordHash)))) return;
			this.logger.warn(`ADMIN_PASSWORD did not change any password: ${why}; it is used only when the admin's account is created (or, with ADMIN_EMAIL, taken over). Change the password through the API.`);
		},

		/** reportUnusedAdminPassword, adminPasswordCheckDelayMs after every service has started (see ensureAdmin). */
		reportUnusedAdminPasswordLater(admin: Entity | null, password: string | undefined, why: string) {
			if (!password) return;
			const check = () => this.reportUnusedAdminPassword(admin, password, why).catch((err: Error) => this.logger.warn(`Could not check ADMIN_PASSWORD against the admin's: ${err.message}`));
			const soon = () => setTimeout(check, this.settings.adminPasswordCheckDelayMs).unref();
			if (this.broker.started) soon();
			else this.broker.localBus.once("$broker.started", soon);
		},

		/**
		 * ADMIN_EMAIL names an account that already exists. Anyone may have registered that address
		 * first, so it is promoted as it is only when its owner proved the address; with ADMIN_PASSWORD
		 * the operator takes it over instead: that password, address verified, every session ended.
		 */
		async promoteToAdmin(user: Entity, password?: string) {
			if (password) {
				// As a password reset does: outstanding reset links die with the old password too. Every
				// session ends, and with it its cached check that still says "customer".
				await this.setPassword(user.id, password, { role: "admin", isVerified: true });
				await this.revokeSessions({ userId: user.id }, "admin_takeover");
				this.logger.warn(`Promoted ${user.email} to admin (ADMIN_EMAIL) with ADMIN_PASSWORD; the account's other sessions were ended.`);
			} else if (user.isVerified) {
				await this.changeRole(user.id, "admin");
				this.logger.info(`Promoted ${user.email} to admin (ADMIN_EMAIL).`);
			} else {
				this.logger.error(
					`ADMIN_EMAIL ${user.email} belongs to an account whose address was never verified: not promoted (anyone can register an address). Verify it, or set ADMIN_PASSWORD to take the account over.`,
				);
			}
		},

		async createAdmin(email: string, password?: string) {
			const secret = password ?? randomPassword();
			const now = new Date();
			try {
				await this.db.users.insert({
					email, passwordHash: await hashPassword(secret, this.cost), firstName: "Admin", lastName: null, phone: null, role: "admin",
					isVerified: true, passwordChangedAt: now, passwordVersion: 0, createdAt: now, updatedAt: now,
				});
			} catch (err) {
				// Another node of the cluster created it at the same moment.
				if ((err as ConflictError).code === 409) return;
				throw err;
			}
			if (password) this.logger.info(`Created admin ${email} with ADMIN_PASSWORD.`);
			else {
				const line = `Created admin ${email} with password: ${secret}  (shown once; set ADMIN_PASSWORD, and ADMIN_EMAIL, to choose your own)`;
				// Shown once only: a LOGLEVEL above warn must not swallow it, or the shop has no admin anyone can sign in as.
				if (logShows(this.cfg.logLevel, "warn")) this.logger.warn(line);
				else process.stderr.write(`${line}\n`);
			}
		},
	},

	created() {
		this.cfg = readConfig();
		this.cost = this.cfg.bcryptCost;
		this.loginFailures = new LoginFailureStore();
	},

	async started() {
		// The embedded store's generated signing secret, made now: made at the first sign-in, a full disk
		// turned a registration already stored into a 500. A start that cannot store it stops, naming why.
		jwtSecret();
		this.releaseBcryptWorkers = holdBcryptWorkers(this.broker.options.requestTimeout);
		this.dummyHash = unmatchableHash(this.cost);
		await this.renormalizeStoredEmails();
		await this.ensureAdmin(undefined, { warnLater: true });
	},

	stopped() {
		this.releaseBcryptWorkers?.();
	},
};

export default UsersService;
