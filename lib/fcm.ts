/**
 * Firebase Cloud Messaging (HTTP v1) for the shop's native apps: the service account that signs in,
 * the message a device gets, and what an error answer means. No I/O but reading the account's file
 * at start; the channel (adapters/channels/fcm-channel.ts) sends.
 *
 * An app (Android, or iOS through the Firebase SDK) gets a registration token from FCM and hands it to
 * the shop (`POST /api/me/push-devices`); the shop signs a JWT with the service account's key, trades
 * it for an access token at Google's token endpoint, and posts each message to
 * `/v1/projects/<project>/messages:send` with it.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import { httpUrl, serverUrlSetting } from "./config";

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
export const DEFAULT_FCM_API_BASE = "https://fcm.googleapis.com";
export const DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token";

/** FCM's registration tokens: letters, digits, `_`, `-` and `:` (~150–200 characters; the limit leaves room). */
export const FCM_TOKEN_PATTERN = /^[A-Za-z0-9_:-]+$/;
export const FCM_TOKEN_MAX = 4096;

export interface FcmAccount {
	projectId: string;
	clientEmail: string;
	/** PEM, as the service account's JSON carries it. */
	privateKey: string;
	tokenUri: string;
}

export interface FcmConfig {
	account: FcmAccount;
	/** The FCM API's origin (another one in tests). */
	apiBase: string;
}

/**
 * FCM_SERVICE_ACCOUNT (the service account's JSON key, as the Firebase console downloads it: a file
 * path or the JSON itself), FCM_PROJECT_ID (default: the key's `project_id`) and FCM_API_BASE (tests).
 * Unset: no FCM, and app devices' messages go to the outbox. A key that cannot sign stops the start,
 * naming the variable.
 */
export function readFcmConfig(env: NodeJS.ProcessEnv): FcmConfig | null {
	const raw = env.FCM_SERVICE_ACCOUNT?.trim();
	if (!raw) {
		if (env.FCM_PROJECT_ID?.trim()) throw new Error("FCM_PROJECT_ID is set without FCM_SERVICE_ACCOUNT (the service account's JSON key, or its file's path)");
		return null;
	}
	let text = raw;
	if (!raw.startsWith("{")) {
		try {
			text = fs.readFileSync(raw, "utf8");
		} catch (err) {
			throw new Error(`FCM_SERVICE_ACCOUNT must be a service account's JSON key or the path of its file; reading "${raw}" failed: ${(err as Error).message}`, { cause: err });
		}
	}
	let json: Record<string, unknown>;
	try {
		json = JSON.parse(text);
	} catch {
		throw new Error("FCM_SERVICE_ACCOUNT is not JSON: set the service account's key as the Firebase console downloads it (or the path of that file)");
	}
	const str = (v: unknown) => (typeof v === "string" && v.trim() ? v.trim() : undefined);
	const clientEmail = str(json.client_email);
	const privateKey = typeof json.private_key === "string" ? json.private_key : undefined;
	const projectId = str(env.FCM_PROJECT_ID) ?? str(json.project_id);
	if (!clientEmail || !privateKey) throw new Error("FCM_SERVICE_ACCOUNT must carry client_email and private_key (a service account's JSON key)");
	if (!projectId) throw new Error("FCM_PROJECT_ID is needed: the service account's key names no project_id");
	try {
		const key = crypto.createPrivateKey(privateKey);
		if (key.asymmetricKeyType !== "rsa") throw new Error(`a ${key.asymmetricKeyType} key`);
	} catch (err) {
		throw new Error(`FCM_SERVICE_ACCOUNT's private_key is not an RSA private key in PEM: ${(err as Error).message}`, { cause: err });
	}
	const tokenUri = str(json.token_uri) ?? DEFAULT_TOKEN_URI;
	const apiBase = (serverUrlSetting("FCM_API_BASE", env.FCM_API_BASE, httpUrl(DEFAULT_FCM_API_BASE)) ?? DEFAULT_FCM_API_BASE).replace(/\/+$/, "");
	for (const [name, url] of [["token_uri", tokenUri], ["FCM_API_BASE", apiBase]] as const) {
		if (!/^https?:\/\/[^\s/]+/i.test(url)) throw new Error(`FCM_SERVICE_ACCOUNT: ${name} must be an http(s) address, not "${url}"`);
	}
	return { account: { projectId, clientEmail, privateKey, tokenUri }, apiBase };
}

/** The signed JWT traded for an access token (OAuth 2.0 JWT bearer grant, RFC 7523), valid for an hour. */
export function jwtAssertion(account: FcmAccount, nowSeconds: number): string {
	const part = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
	const unsigned = `${part({ alg: "RS256", typ: "JWT" })}.${part({ iss: account.clientEmail, scope: FCM_SCOPE, aud: account.tokenUri, iat: nowSeconds, exp: nowSeconds + 3600 })}`;
	const signature = crypto.sign("sha256", Buffer.from(unsigned), account.privateKey).toString("base64url");
	return `${unsigned}.${signature}`;
}

export interface AppPush {
	title: string;
	body: string;
	/** The storefront page the notification stands for (an app opens its own screen for it). */
	url: string | null;
	/** Our message id: a repeat of one message replaces, not adds to, what the device shows. */
	tag: string;
}

/** The `messages:send` body: a notification the system shows, with the link and id as data for the app. */
export function fcmMessage(token: string, push: AppPush, ttlSeconds: number): Record<string, unknown> {
	const data: Record<string, string> = { notificationId: push.tag };
	if (push.url) data.url = push.url;
	return {
		message: {
			token,
			notification: { title: push.title, body: push.body },
			data,
			android: { ttl: `${ttlSeconds}s`, notification: { tag: push.tag } },
			apns: { headers: { "apns-expiration": String(Math.floor(Date.now() / 1000) + ttlSeconds), "apns-collapse-id": push.tag.slice(0, 64) } },
		},
	};
}

export type FcmFailure =
	/** The token will never take a message again (the app was uninstalled, or the token belongs to another project). */
	| { kind: "gone"; reason: string }
	/** Sending this message again cannot help (it was refused as it is). */
	| { kind: "refused"; reason: string }
	/** The access token was refused: sign in again and retry. */
	| { kind: "unauthorized"; reason: string }
	/** Try again later (429, 5xx, no answer). */
	| { kind: "transient"; reason: string };

/**
 * What an error answer of `messages:send` means, from its status and the FCM error code in its
 * details (`UNREGISTERED`, `SENDER_ID_MISMATCH`, `INVALID_ARGUMENT`, `QUOTA_EXCEEDED`, ...).
 */
export function classifyFcmError(status: number, body: unknown): FcmFailure {
	const error = (body as { error?: { message?: unknown; status?: unknown; details?: unknown } } | null)?.error;
	const details = Array.isArray(error?.details) ? (error!.details as Array<Record<string, unknown>>) : [];
	const fcmCode = details.map((d) => d.errorCode).find((c): c is string => typeof c === "string") ?? (typeof error?.status === "string" ? error.status : undefined);
	const reason = `FCM ${status}${fcmCode ? ` ${fcmCode}` : ""}${typeof error?.message === "string" && error.message ? `: ${error.message.slice(0, 200)}` : ""}`;
	if (fcmCode === "UNREGISTERED" || status === 404) return { kind: "gone", reason };
	if (fcmCode === "SENDER_ID_MISMATCH") return { kind: "gone", reason };
	// A token FCM cannot read is as good as gone ("The registration token is not a valid FCM registration
	// token", or a field violation on message.token); another invalid argument is the message's own fault.
	if (fcmCode === "INVALID_ARGUMENT" && (badToken(error?.message) || details.some((d) => Array.isArray(d.fieldViolations) && d.fieldViolations.some((v: any) => v?.field === "message.token")))) {
		return { kind: "gone", reason };
	}
	// APNs refused Firebase's credentials for the iOS app (set in the Firebase console): later, once fixed.
	if (fcmCode === "THIRD_PARTY_AUTH_ERROR") return { kind: "transient", reason };
	if (status === 401) return { kind: "unauthorized", reason };
	if (status === 429 || status >= 500) return { kind: "transient", reason };
	return { kind: "refused", reason };
}

const badToken = (message: unknown) => typeof message === "string" && /registration token/i.test(message);
