/**
 * Push to the shop's apps through Firebase Cloud Messaging (HTTP v1, lib/fcm.ts): one access token
 * for every message until shortly before it expires (one sign-in at a time), a new one when FCM
 * refuses it. A token FCM no longer knows is a SubscriptionGoneError (the service drops the device).
 */
import { classifyFcmError, fcmMessage, jwtAssertion, type FcmConfig } from "../../lib/fcm";
import { DeliveryError, SEND_TIMEOUT_MS, SubscriptionGoneError, type DeliveryResult, type NotificationChannel, type OutgoingMessage, type SendOptions } from "./notification-channel";

export interface FcmChannelOptions extends FcmConfig {
	/** How long FCM keeps a message for a device that is offline. */
	ttlSeconds?: number;
	timeoutMs?: number;
}

/** An answer's JSON body, or null for none (Google's and FCM's errors are JSON; a proxy's may not be). */
const jsonOf = (res: Response) => res.json().catch(() => null) as Promise<Record<string, unknown> | null>;

/** Renewed this long before it expires, so a message never goes with a token about to lapse. */
const RENEW_BEFORE_MS = 5 * 60_000;

export class FcmChannel implements NotificationChannel {
	readonly provider = "fcm" as const;
	readonly medium = "push" as const;
	private token: { value: string; expiresAt: number } | null = null;
	private signingIn: Promise<string> | null = null;

	constructor(private readonly opts: FcmChannelOptions) {}

	async send(message: OutgoingMessage, options: SendOptions = {}): Promise<DeliveryResult> {
		if (!message.device) throw new Error("An app push message needs its device");
		const body = JSON.stringify(fcmMessage(message.device.token, { title: message.subject ?? "", body: message.text, url: message.url ?? null, tag: message.id }, this.opts.ttlSeconds ?? 24 * 3600));
		const timeoutMs = options.timeoutMs ?? this.opts.timeoutMs ?? SEND_TIMEOUT_MS;
		let res = await this.post(body, await this.accessToken(), timeoutMs);
		let json = await jsonOf(res);
		if (res.status === 401 && classifyFcmError(res.status, json).kind === "unauthorized") {
			// Our access token revoked or expired early: sign in again, once.
			this.token = null;
			res = await this.post(body, await this.accessToken(), timeoutMs);
			json = await jsonOf(res);
		}
		if (res.ok) return { status: "sent", provider: this.provider, providerId: typeof json?.name === "string" ? json.name : null };
		const failure = classifyFcmError(res.status, json);
		if (failure.kind === "gone") throw new SubscriptionGoneError(`${failure.reason} (the app's device token is no longer valid)`, this.provider, res.status, true);
		throw new DeliveryError(failure.reason, this.provider, res.status, failure.kind === "refused", res.headers.get("retry-after"));
	}

	private async post(body: string, accessToken: string, timeoutMs: number): Promise<Response> {
		try {
			return await fetch(`${this.opts.apiBase}/v1/projects/${encodeURIComponent(this.opts.account.projectId)}/messages:send`, {
				method: "POST",
				headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
				body,
				redirect: "manual",
				signal: AbortSignal.timeout(timeoutMs),
			});
		} catch (err) {
			throw new DeliveryError(`FCM unreachable: ${(err as Error).message}`, this.provider);
		}
	}

	/** The current access token, or a new one (concurrent sends share one sign-in). */
	private accessToken(): Promise<string> {
		if (this.token && this.token.expiresAt - RENEW_BEFORE_MS > Date.now()) return Promise.resolve(this.token.value);
		this.signingIn ??= this.signIn().finally(() => {
			this.signingIn = null;
		});
		return this.signingIn;
	}

	private async signIn(): Promise<string> {
		const { account } = this.opts;
		let res: Response;
		try {
			res = await fetch(account.tokenUri, {
				method: "POST",
				headers: { "content-type": "application/x-www-form-urlencoded" },
				body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: jwtAssertion(account, Math.floor(Date.now() / 1000)) }).toString(),
				redirect: "manual",
				signal: AbortSignal.timeout(this.opts.timeoutMs ?? SEND_TIMEOUT_MS),
			});
		} catch (err) {
			throw new DeliveryError(`FCM sign-in unreachable: ${(err as Error).message}`, this.provider);
		}
		const json = await jsonOf(res);
		if (!res.ok || typeof json?.access_token !== "string") {
			const why = typeof json?.error_description === "string" ? json.error_description : typeof json?.error === "string" ? json.error : "no access token";
			// A key Google refuses (deleted, disabled) is the operator's to fix: the message waits and is tried again.
			throw new DeliveryError(`FCM sign-in as ${account.clientEmail} failed (${res.status}): ${why}`, this.provider, res.status, false);
		}
		const seconds = typeof json.expires_in === "number" && json.expires_in > 0 ? json.expires_in : 3600;
		this.token = { value: json.access_token, expiresAt: Date.now() + seconds * 1000 };
		return json.access_token;
	}
}
