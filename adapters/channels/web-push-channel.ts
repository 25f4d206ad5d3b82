/**
 * Web Push to a browser's push service: the web-push library encrypts the payload for the
 * subscription (aes128gcm) and signs the VAPID header; the request itself goes through fetch, so
 * that a timeout bounds it and an http push service (a local one in tests, see WEB_PUSH_HOSTS) works.
 */
import { generateRequestDetails } from "web-push";
import { pushPayloadJson } from "../../lib/web-push";
import { DeliveryError, SEND_TIMEOUT_MS, SubscriptionGoneError, type DeliveryResult, type NotificationChannel, type OutgoingMessage, type SendOptions } from "./notification-channel";

export interface VapidKeys {
	publicKey: string;
	privateKey: string;
}

export interface WebPushOptions extends VapidKeys {
	/** The contact the push services may reach the shop at (`mailto:` or `https:`). */
	subject: string;
	/** How long a push service keeps a message for a browser that is offline. */
	ttlSeconds?: number;
	timeoutMs?: number;
}

export class WebPushChannel implements NotificationChannel {
	readonly provider = "webpush" as const;
	readonly medium = "push" as const;

	constructor(private readonly opts: WebPushOptions) {}

	async send(message: OutgoingMessage, options: SendOptions = {}): Promise<DeliveryResult> {
		if (!message.push) throw new Error("A push message needs its subscription");
		const payload = pushPayloadJson({ title: message.subject ?? "", body: message.text, url: message.url ?? null, tag: message.id });
		let request: ReturnType<typeof generateRequestDetails>;
		try {
			request = generateRequestDetails({ endpoint: message.push.endpoint, keys: message.push.keys }, payload, {
				vapidDetails: { subject: this.opts.subject, publicKey: this.opts.publicKey, privateKey: this.opts.privateKey },
				TTL: this.opts.ttlSeconds ?? 24 * 3600,
				contentEncoding: "aes128gcm",
			});
		} catch (err) {
			// Keys that cannot encrypt (checked at subscribe, so stored before that check): no message will ever go.
			throw new SubscriptionGoneError(`The subscription's keys cannot encrypt a message: ${(err as Error).message}`, this.provider, undefined, true);
		}
		let res: Response;
		try {
			res = await fetch(request.endpoint, {
				method: request.method,
				headers: request.headers as Record<string, string>,
				body: request.body ? new Uint8Array(request.body) : undefined,
				// A push service answers; it does not send the shop elsewhere.
				redirect: "manual",
				signal: AbortSignal.timeout(options.timeoutMs ?? this.opts.timeoutMs ?? SEND_TIMEOUT_MS),
			});
		} catch (err) {
			throw new DeliveryError(`Push service unreachable: ${(err as Error).message}`, this.provider);
		}
		const text = (await res.text().catch(() => "")).slice(0, 200);
		if (res.status === 404 || res.status === 410) throw new SubscriptionGoneError(`Push subscription gone (${res.status}): the browser unsubscribed or it expired`, this.provider, res.status);
		if (res.status >= 300 && res.status < 400) throw new DeliveryError(`Push service answered a redirect (${res.status}), which is not followed`, this.provider, res.status, true);
		if (!res.ok) throw new DeliveryError(`Push service ${res.status} error${text ? `: ${text}` : ""}`, this.provider, res.status, undefined, res.headers.get("retry-after"));
		// Push services answer 201 with the message's URL in Location (RFC 8030 section 5).
		return { status: "sent", provider: this.provider, providerId: res.headers.get("location") };
	}
}
