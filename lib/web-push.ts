/**
 * Web Push (RFC 8030, payloads encrypted per RFC 8291, VAPID per RFC 8292): which push services a
 * subscription may name, the shape of its keys, and what a message carries. Pure: the channel
 * (adapters/channels/web-push-channel.ts) sends, the notifications service stores.
 */
import crypto from "node:crypto";

/**
 * The push services of the browsers (Chrome/Edge through FCM, Firefox, Safari, Windows). A browser
 * hands the storefront an endpoint URL, and the shop later POSTs to it: an endpoint elsewhere would
 * make the shop send requests wherever a customer points it, so only these hosts and their
 * subdomains are accepted unless WEB_PUSH_HOSTS names others.
 */
export const DEFAULT_PUSH_HOSTS: readonly string[] = ["fcm.googleapis.com", "updates.push.services.mozilla.com", "push.apple.com", "notify.windows.com"];

/** One allowed push service: any https host equal to or under `host`, or one exact http origin (a local service in tests). */
export interface PushHost {
	host: string;
	insecureOrigin?: string;
}

/**
 * WEB_PUSH_HOSTS: comma-separated host names (https, subdomains included) or exact `http://host:port`
 * origins; unset keeps the browsers' services. Throws naming the variable on an entry that is neither.
 */
export function parsePushHosts(value: string | undefined): PushHost[] {
	if (value == null || value.trim() === "") return DEFAULT_PUSH_HOSTS.map((host) => ({ host }));
	return value.split(",").map((raw) => raw.trim()).filter(Boolean).map((entry) => {
		if (/^http:\/\//i.test(entry)) {
			let origin: string;
			try {
				origin = new URL(entry).origin;
			} catch {
				throw new Error(`WEB_PUSH_HOSTS: "${entry}" is not an http origin (http://host:port)`);
			}
			return { host: new URL(origin).hostname, insecureOrigin: origin };
		}
		if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(entry)) {
			throw new Error(`WEB_PUSH_HOSTS: "${entry}" is not a host name (e.g. fcm.googleapis.com) or an http://host:port origin`);
		}
		return { host: entry.toLowerCase() };
	});
}

/**
 * A subscription's endpoint as the shop keeps and calls it: an https URL on an allowed push service,
 * on its standard port, in canonical form (`new URL().href`, without a fragment), so that spellings
 * of one browser's endpoint (`HTTPS://FCM...`, `/./`, `#x`) are one subscription; or why it cannot be used.
 */
export function canonicalPushEndpoint(endpoint: string, hosts: readonly PushHost[]): { endpoint: string } | { problem: string } {
	let url: URL;
	try {
		url = new URL(endpoint);
	} catch {
		return { problem: "must be a URL" };
	}
	if (url.username || url.password) return { problem: "must not carry credentials" };
	url.hash = "";
	if (url.protocol === "http:") return hosts.some((h) => h.insecureOrigin === url.origin) ? { endpoint: url.href } : { problem: "must be an https URL" };
	if (url.protocol !== "https:") return { problem: "must be an https URL" };
	// The shop posts to whatever the endpoint names: another port of a push service's host is not the push service.
	if (url.port) return { problem: "must be on the push service's standard https port" };
	const host = url.hostname;
	const allowed = hosts.some((h) => !h.insecureOrigin && (host === h.host || host.endsWith(`.${h.host}`)));
	return allowed ? { endpoint: url.href } : { problem: `must be on a browser push service (${hosts.map((h) => h.insecureOrigin ?? h.host).join(", ")})` };
}

/** Whether `point` is a P-256 public key, uncompressed (0x04, x, y) and on the curve: a key of the right size that is not cannot encrypt a message. */
export function isP256Point(point: Buffer): boolean {
	if (point.length !== 65 || point[0] !== 0x04) return false;
	try {
		crypto.createPublicKey({ key: { kty: "EC", crv: "P-256", x: point.subarray(1, 33).toString("base64url"), y: point.subarray(33, 65).toString("base64url") }, format: "jwk" });
		return true;
	} catch {
		return false;
	}
}

/** The public key (65 bytes, uncompressed) of a P-256 private key (32 bytes), or null when it is none. */
export function p256PublicKeyOf(privateKey: Buffer): Buffer | null {
	try {
		const ecdh = crypto.createECDH("prime256v1");
		ecdh.setPrivateKey(privateKey);
		return ecdh.getPublicKey();
	} catch {
		return null;
	}
}

function base64urlBytes(value: string): Buffer | null {
	return /^[A-Za-z0-9_-]+={0,2}$/.test(value) ? Buffer.from(value, "base64url") : null;
}

/**
 * Why a subscription's keys cannot encrypt a message, or null: `p256dh` is the browser's P-256
 * public key (65 bytes, uncompressed), `auth` its 16-byte secret, both base64url as the browser's
 * PushSubscription.toJSON() gives them. Checked at subscribe, so a bad key is a 422 then, not a failed message later.
 */
export function pushKeysProblem(keys: { p256dh: string; auth: string }): { field: "p256dh" | "auth"; message: string } | null {
	const p256dh = base64urlBytes(keys.p256dh);
	if (!p256dh || !isP256Point(p256dh)) return { field: "p256dh", message: "must be the browser's P-256 public key: 65 bytes (uncompressed point), base64url" };
	const auth = base64urlBytes(keys.auth);
	if (!auth || auth.length !== 16) return { field: "auth", message: "must be the subscription's 16-byte auth secret, base64url" };
	return null;
}

/** What the storefront's service worker receives, as JSON: it shows `title` and `body` and opens `url` on a click. */
export interface PushPayload {
	title: string;
	body: string;
	url: string | null;
	/** The message's id: a service worker may use it as the notification's tag, so a redelivery replaces rather than repeats. */
	tag: string;
}

/** A text cut (between characters) so that its JSON form fits in `maxBytes`, with "…" where it was cut. */
function clip(text: string, maxBytes: number): string {
	if (Buffer.byteLength(JSON.stringify(text)) <= maxBytes) return text;
	let out = "";
	for (const ch of text) {
		if (Buffer.byteLength(JSON.stringify(`${out}${ch}…`)) > maxBytes) break;
		out += ch;
	}
	return `${out}…`;
}

/**
 * The payload as sent: JSON, its title and body cut to keep the whole well within the 4 kB that
 * push services take once encrypted (the texts come from templates, with a name or number in them).
 */
export function pushPayloadJson(payload: PushPayload): string {
	return JSON.stringify({ ...payload, title: clip(payload.title, 300), body: clip(payload.body, 2_000) });
}
