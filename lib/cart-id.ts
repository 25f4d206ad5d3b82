/**
 * Guest cart ids: a bearer secret the shop issues, so only ids it issued are taken. An id is 18
 * random bytes and a MAC of them under the shop's secret (JWT_SECRET, the same on every node):
 * a client cannot pick a cart id of its own (a guessable one, or one planted for someone else).
 */
import crypto from "node:crypto";

const MAC_LENGTH = 16;
const ID = /^([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{16})$/;

const mac = (random: string, secret: string) => crypto.createHmac("sha256", secret).update(`cart:${random}`).digest("base64url").slice(0, MAC_LENGTH);

export function issueCartId(secret: string): string {
	const random = crypto.randomBytes(18).toString("base64url");
	return `${random}.${mac(random, secret)}`;
}

/** Whether `id` is one this shop issued (under `secret`). */
export function isIssuedCartId(id: unknown, secret: string): id is string {
	if (typeof id !== "string") return false;
	const m = ID.exec(id);
	if (!m) return false;
	const expected = Buffer.from(mac(m[1], secret));
	const given = Buffer.from(m[2]);
	return expected.length === given.length && crypto.timingSafeEqual(expected, given);
}
