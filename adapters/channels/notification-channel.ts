/**
 * The seam between notifications and whatever carries a message: the outbox (nothing leaves),
 * SendGrid (email), Twilio (SMS), a browser's push service (Web Push) or FCM (the shop's apps). The service
 * holds one channel per medium (push: one for browsers, one for apps) and never asks which provider.
 */
import { isTransientStatus, retryAfterMs } from "../../lib/retry-backoff";
import type { Medium } from "../../lib/notification-plan";

export interface OutgoingMessage {
	/** Our message id, passed to providers that keep a reference. */
	id: string;
	to: string;
	subject?: string;
	html?: string;
	text: string;
	/** Push: the page a click on the notification opens. */
	url?: string;
	/** Push: the browser's subscription the message is encrypted for and sent to. */
	push?: { endpoint: string; keys: { p256dh: string; auth: string } };
	/** Push to an app: the device's FCM registration token. */
	device?: { token: string };
}

/** A provider's usual wait for an answer. */
export const SEND_TIMEOUT_MS = 15_000;

/**
 * One SDK client per answer timeout, made when first needed: SendGrid's and Twilio's SDKs set the
 * timeout per client, not per request, and a retry after no answer waits longer (see the service).
 */
export function clientPerTimeout<T>(make: (timeoutMs: number) => T): (timeoutMs: number) => T {
	const made = new Map<number, T>();
	return (timeoutMs) => {
		let client = made.get(timeoutMs);
		if (client === undefined) made.set(timeoutMs, (client = make(timeoutMs)));
		return client;
	};
}

/** How one send is made. */
export interface SendOptions {
	/**
	 * How long to wait for the provider's answer, instead of the channel's usual 15 s: longer for the
	 * retry of an attempt that got none (the provider may have taken it, slowly; see the service).
	 */
	timeoutMs?: number;
}

export interface DeliveryResult {
	/** "outboxed": stored for a later or manual relay, nothing left the shop. */
	status: "sent" | "outboxed";
	provider: string;
	providerId: string | null;
}

export interface NotificationChannel {
	readonly provider: "outbox" | "sendgrid" | "twilio" | "webpush" | "fcm";
	readonly medium: Medium;
	/**
	 * Storing the message is its delivery (the outbox: nothing leaves the shop, and the stored message
	 * is what a relay reads). The service then stores it final at once, and `send` only reports it.
	 */
	readonly deliversByStoring?: boolean;
	send(message: OutgoingMessage, options?: SendOptions): Promise<DeliveryResult>;
}

/**
 * A provider refused or failed a message; `permanent` means retrying the same request cannot help
 * (by default, judged from the provider's status). No `status`: no answer came (a timeout, the
 * network), so the provider may have taken the message. `retryAfter`: the answer's Retry-After header
 * (a 429 or 503), read into `retryAfterMs`, the wait the retry honours.
 */
export class DeliveryError extends Error {
	readonly permanent: boolean;
	readonly retryAfterMs?: number;
	constructor(
		message: string,
		readonly provider: string,
		readonly status?: number,
		permanent?: boolean,
		retryAfter?: string | null,
	) {
		super(message);
		this.name = "DeliveryError";
		this.permanent = permanent ?? !isTransientStatus(status);
		this.retryAfterMs = retryAfterMs(retryAfter) ?? undefined;
	}
}

/** The browser's subscription or the app's device is gone (unsubscribed, expired, uninstalled): nothing will reach it again. */
export class SubscriptionGoneError extends DeliveryError {}
