/**
 * What the users service stores and what it lets out: the collection specs (one source for NeDB
 * and the mongoose schemas) and the public projections, which never carry a hash.
 */
import type { CollectionSpec, Entity } from "../mixins/collection";

/**
 * A phone number in E.164 ("+14155550100") from what a customer typed, or null when it is not one
 * (no text can reach it): the profile refuses such a phone, and notifications text only E.164 numbers.
 */
export function toE164(phone: unknown): string | null {
	if (typeof phone !== "string") return null;
	const compact = phone.replace(/[\s().-]/g, "").replace(/^00/, "+");
	return /^\+[1-9]\d{6,14}$/.test(compact) ? compact : null;
}

const WEEK_SECONDS = 7 * 24 * 3600;
export const ADDRESS_TYPES = ["shipping", "billing"];

/** Collection specs, exported so the mongoose schemas can be checked without a server. */
export const userCollections: Record<string, CollectionSpec> = {
	users: {
		fields: {
			email: { type: String, required: true, trim: true, lowercase: true, maxlength: 254 },
			passwordHash: { type: String, required: true },
			firstName: { type: String, default: null, maxlength: 100 },
			lastName: { type: String, default: null, maxlength: 100 },
			phone: { type: String, default: null, maxlength: 32 },
			role: { type: String, enum: ["customer", "admin"], required: true, default: "customer" },
			isVerified: { type: Boolean, required: true, default: false },
			passwordChangedAt: Date,
			/** Raised by every password change or reset; a session opened under an older one is dead (refresh-tokens.ts). */
			passwordVersion: { type: Number, default: 0 },
			/** When the last password-reset mail went out (one a minute). */
			resetMailAt: Date,
			/** An erasure under way: no checkout may create an order for the account until then (see users.checkCanOrder). */
			closingUntil: Date,
			/** When the account was erased (erasedUserFields). */
			deletedAt: Date,
			createdAt: { type: Date, required: true },
			updatedAt: Date,
		},
		indexes: [{ fields: { email: 1 }, unique: true }, { fields: { role: 1 } }],
	},
	user_sessions: {
		fields: {
			userId: { type: String, required: true },
			refreshHash: { type: String, required: true },
			spentHashes: { type: [String], default: [] },
			ip: String,
			createdAt: { type: Date, required: true },
			/** The user's passwordVersion the session was opened with (none on sessions stored before it was kept). */
			passwordVersion: Number,
			lastUsedAt: Date,
			expiresAt: { type: Date, required: true },
			revokedAt: { type: Date, default: null },
			revokedReason: String,
		},
		indexes: [
			{ fields: { refreshHash: 1 }, unique: true },
			{ fields: { spentHashes: 1 } },
			{ fields: { userId: 1 } },
			// Expired sessions stay a week for audit, then go.
			{ fields: { expiresAt: 1 }, expireAfterSeconds: WEEK_SECONDS },
		],
	},
	user_addresses: {
		fields: {
			userId: { type: String, required: true },
			type: { type: String, enum: ADDRESS_TYPES, required: true },
			line1: { type: String, required: true, maxlength: 200 },
			line2: { type: String, default: null, maxlength: 200 },
			city: { type: String, required: true, maxlength: 100 },
			state: { type: String, default: null, maxlength: 100 },
			postalCode: { type: String, required: true, maxlength: 20 },
			country: { type: String, required: true, maxlength: 56 },
			// "<userId>:<type>" on the default address only: a sparse unique index allows one per type.
			defaultFor: { type: String },
			createdAt: { type: Date, required: true },
			updatedAt: Date,
		},
		indexes: [{ fields: { userId: 1 } }, { fields: { defaultFor: 1 }, unique: true, sparse: true }],
	},
	user_wishlist: {
		fields: { userId: { type: String, required: true }, productId: { type: String, required: true }, addedAt: { type: Date, required: true } },
		// `userId` alone too: the embedded store reads a compound index only for a query naming all its fields (a customer's list).
		indexes: [{ fields: { userId: 1, productId: 1 }, unique: true }, { fields: { userId: 1 } }],
	},
	user_tokens: {
		fields: {
			purpose: { type: String, enum: ["verify_email", "password_reset", "change_email"], required: true },
			userId: { type: String, required: true },
			email: { type: String, required: true },
			tokenHash: { type: String, required: true },
			expiresAt: { type: Date, required: true },
			usedAt: { type: Date, default: null },
			createdAt: { type: Date, required: true },
		},
		indexes: [
			{ fields: { tokenHash: 1 }, unique: true },
			{ fields: { userId: 1, purpose: 1 } },
			{ fields: { expiresAt: 1 }, expireAfterSeconds: WEEK_SECONDS },
		],
	},
};

export interface PublicUser {
	id: string;
	email: string;
	firstName: string | null;
	lastName: string | null;
	phone: string | null;
	role: "customer" | "admin";
	isVerified: boolean;
	createdAt: string;
}

/**
 * The one form of an address an account is stored and found under: compatibility forms folded
 * (fullwidth "ａ" is "a", a precomposed "é" and "e" + accent are one), then lower case.
 */
export function normalizeEmail(email: string): string {
	return email.normalize("NFKC").trim().toLowerCase();
}

/**
 * The stored forms an address may have: the normalised one, and the one accounts made before it
 * was kept in NFKC were stored under (trimmed, lower case), so those accounts are still found.
 */
export function emailForms(email: string): string[] {
	return [...new Set([normalizeEmail(email), email.trim().toLowerCase()])];
}

/** Letters of these scripts look alike ("а" Cyrillic, "a" Latin): one part of an address may use only one of them. */
const LOOK_ALIKE_SCRIPTS = [/\p{Script=Latin}/u, /\p{Script=Cyrillic}/u, /\p{Script=Greek}/u];

/**
 * Why an address may not make an account (null when it may): one that shows as another one would
 * let an account pass for someone else's, the admin's included. Refused: invisible and control
 * characters (a zero-width space), a part mixing look-alike scripts ("аdmin" with a Cyrillic "а"),
 * and accents left uncombined on Latin letters ("admi̇n"); and a quoted local part, which is valid
 * (RFC 5321) but to a mail server "ann"@ is ann@. Checked on the normalised form.
 */
export function emailProblem(email: string): string | null {
	const normal = normalizeEmail(email);
	// Before the check below: a space inside quotes is no invisible character, and the message said it was.
	if (normal.startsWith('"')) return "The email address has a quoted part before the @ (\"...\"@), which is not accepted: use the address without quotes or spaces";
	if (/[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Z}]/u.test(normal)) return "The email address contains invisible or control characters";
	// A reserved domain that receives no mail (RFC 2606); deleted accounts are parked under it (erasedUserFields).
	if (/\.invalid\.?$/.test(normal)) return "The email address is under .invalid, a domain that receives no mail";
	for (const part of normal.split(/[@.]/)) {
		const scripts = LOOK_ALIKE_SCRIPTS.filter((script) => script.test(part));
		if (scripts.length > 1) return "The email address mixes letters of different alphabets";
		if (scripts[0] === LOOK_ALIKE_SCRIPTS[0] && /\p{M}/u.test(part)) return "The email address has an accent that is not part of its letter";
	}
	return null;
}

/**
 * What is left of an account its owner deleted: the id (orders still point to it) and the role, under
 * an address that can receive no mail and frees the real one for a new account; nothing that names the
 * person, and a password hash nothing matches.
 */
export function erasedUserFields(u: { id: string; passwordVersion?: number }, now: Date, hash: string): Record<string, unknown> {
	return {
		// Hex: ids differ in case, and addresses are kept in lower case.
		email: `deleted-${Buffer.from(u.id).toString("hex")}@deleted.invalid`,
		firstName: null,
		lastName: null,
		phone: null,
		passwordHash: hash,
		passwordVersion: (u.passwordVersion ?? 0) + 1,
		isVerified: false,
		deletedAt: now,
		closingUntil: null,
		updatedAt: now,
	};
}

/** How long an erasure holds new orders off; it is over in seconds, and a stale mark (its node died) lapses. */
export const ERASURE_LEASE_MS = 10 * 60_000;

/** The 409s of an erasure, by the customer (POST /me/delete) or an admin (POST /users/:id/delete), as the API document lists them. */
export const ERASURE_CONFLICTS = "An admin account (ADMIN_ACCOUNT), orders still under way (ORDERS_OPEN, `data.orders`), or another erasure of the account under way (ERASURE_IN_PROGRESS)";

/**
 * Why no order may be created for this account now, or null: it is gone, erased, or an erasure is under
 * way (`closingUntil`, set before the erasure looks for open orders).
 */
export function orderingRefusal(u: Record<string, unknown> | null, now: Date): string | null {
	if (!u || u.deletedAt) return "The account was deleted";
	if (u.closingUntil && new Date(u.closingUntil as string).getTime() > now.getTime()) return "The account is being deleted";
	return null;
}

/** The only shape of a user that leaves this service: no hashes, ever. */
export function publicUser(u: Entity): PublicUser {
	return {
		id: u.id, email: u.email, firstName: u.firstName ?? null, lastName: u.lastName ?? null, phone: u.phone ?? null,
		role: u.role, isVerified: !!u.isVerified, createdAt: new Date(u.createdAt).toISOString(),
	};
}

/** An address as the customer and the orders service see it. */
export function publicAddress(a: Entity) {
	return {
		id: a.id, type: a.type, line1: a.line1, line2: a.line2 ?? null, city: a.city, state: a.state ?? null,
		postalCode: a.postalCode, country: a.country, isDefault: !!a.defaultFor, createdAt: new Date(a.createdAt).toISOString(),
	};
}
