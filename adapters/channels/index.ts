/**
 * Picks the notification channels from the environment: SendGrid for email when SENDGRID_API_KEY
 * is set, Twilio for SMS when TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM are; the
 * outbox otherwise. SENDGRID_API_BASE and TWILIO_API_BASE point the clients at another host (tests).
 * Web Push needs no provider (the browser names its push service); its settings are read here, and
 * the service makes its channel once the keys are loaded. Push to the shop's apps goes through FCM
 * when FCM_SERVICE_ACCOUNT is set, to the outbox otherwise.
 */
import { httpUrl, nonEmpty, readConfig, serverUrlSetting } from "../../lib/config";
import { p256PublicKeyOf, parsePushHosts } from "../../lib/web-push";
import { readFcmConfig } from "../../lib/fcm";
import { FcmChannel } from "./fcm-channel";
import type { NotificationChannel } from "./notification-channel";
import { OutboxChannel } from "./outbox-channel";
import { SendGridChannel } from "./sendgrid-channel";
import { TwilioChannel } from "./twilio-channel";

export type { NotificationChannel, OutgoingMessage, DeliveryResult } from "./notification-channel";
export { DeliveryError, SubscriptionGoneError } from "./notification-channel";
export { OutboxChannel } from "./outbox-channel";
export { SendGridChannel } from "./sendgrid-channel";
export { TwilioChannel, rebasedRequestClient } from "./twilio-channel";
export { FcmChannel } from "./fcm-channel";

/** Notification settings from the environment (read when the service is created, never at import). */
/**
 * The settings of messages, checked as readConfig checks its own: a value that would send broken
 * messages (a link without its scheme, a sender no provider takes) stops the start, naming it.
 */
export function readNotificationConfig(env: NodeJS.ProcessEnv = process.env) {
	// The numbers as readConfig reads (and checks) them: a malformed one stops the start there.
	const { notifyConcurrency, notifyMaxAttempts, notifyRetryMinutes, notificationRetentionDays } = readConfig(env);
	const fromEmail = nonEmpty(env.NOTIFY_FROM_EMAIL);
	if (fromEmail && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(fromEmail)) throw new Error(`NOTIFY_FROM_EMAIL must be an email address (e.g. shop@example.com), not "${env.NOTIFY_FROM_EMAIL}"`);
	const storefrontUrl = nonEmpty(env.STOREFRONT_URL);
	if (storefrontUrl && !/^https?:\/\/[^\s/]+/i.test(storefrontUrl)) {
		throw new Error(`STOREFRONT_URL must be the storefront's http(s) address (e.g. https://shop.example.com), which the messages' links start with, not "${env.STOREFRONT_URL}"`);
	}
	// The links add a path and a query of their own: one in the base made "...?utm_source=mail/verify-email?token=...".
	if (storefrontUrl && /[?#]/.test(storefrontUrl)) {
		throw new Error(`STOREFRONT_URL must be the storefront's address without a query or fragment (the messages' links add their own path and token), not "${env.STOREFRONT_URL}"`);
	}
	const twilio = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"] as const;
	const missing = twilio.filter((k) => !nonEmpty(env[k]));
	if (missing.length && missing.length < twilio.length) throw new Error(`${twilio.join(", ")} go together (SMS through Twilio): ${missing.join(" and ")} missing`);
	// A malformed host would fail every message at send time, each retried to the end of its attempts.
	const httpBase = (name: string) => serverUrlSetting(name, env[name], httpUrl("http://127.0.0.1:12121"));
	const sendgridBase = httpBase("SENDGRID_API_BASE");
	const twilioBase = httpBase("TWILIO_API_BASE");
	return {
		webPush: readWebPushConfig(env, fromEmail ?? "no-reply@example.com"),
		/** Push to the shop's apps through FCM; null: their messages go to the outbox. */
		fcm: readFcmConfig(env),
		concurrency: notifyConcurrency,
		/** Attempts before a message is failed; Infinity (unset): by retryWindowMs only. */
		maxAttempts: notifyMaxAttempts,
		/** A failure this long after a message's first attempt is its last. */
		retryWindowMs: notifyRetryMinutes * 60_000,
		/** Days a finished message (sent, outboxed or failed) is kept; 0 keeps it for good. */
		retentionDays: notificationRetentionDays,
		fromEmail: fromEmail ?? "no-reply@example.com",
		shopName: nonEmpty(env.SHOP_NAME) ?? "Moleculer Shop",
		storefrontUrl: storefrontUrl?.replace(/\/+$/, "") ?? "http://localhost:3000",
		/** Outboxed messages are logged whole (at info) in development, the default of `npm start`. */
		logWholeOutboxed: (env.NODE_ENV || "development") === "development",
		sendgrid: env.SENDGRID_API_KEY ? { apiKey: env.SENDGRID_API_KEY, baseUrl: sendgridBase } : null,
		twilio:
			env.TWILIO_ACCOUNT_SID && env.TWILIO_AUTH_TOKEN && env.TWILIO_FROM
				? { accountSid: env.TWILIO_ACCOUNT_SID, authToken: env.TWILIO_AUTH_TOKEN, from: env.TWILIO_FROM, apiBase: twilioBase }
				: null,
	};
}

export type NotificationConfig = ReturnType<typeof readNotificationConfig>;

function base64urlLength(value: string): number | null {
	return /^[A-Za-z0-9_-]+$/.test(value) ? Buffer.from(value, "base64url").length : null;
}

/** VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY (both or neither, as web-push's generateVAPIDKeys writes them), VAPID_SUBJECT, WEB_PUSH_HOSTS. */
function readWebPushConfig(env: NodeJS.ProcessEnv, fromEmail: string) {
	const publicKey = nonEmpty(env.VAPID_PUBLIC_KEY);
	const privateKey = nonEmpty(env.VAPID_PRIVATE_KEY);
	if (!publicKey !== !privateKey) throw new Error(`VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY go together (Web Push): ${publicKey ? "VAPID_PRIVATE_KEY" : "VAPID_PUBLIC_KEY"} missing`);
	if (publicKey && base64urlLength(publicKey) !== 65) throw new Error("VAPID_PUBLIC_KEY must be a P-256 public key, 65 bytes in base64url (as `npx web-push generate-vapid-keys` prints it)");
	if (privateKey && base64urlLength(privateKey) !== 32) throw new Error("VAPID_PRIVATE_KEY must be a P-256 private key, 32 bytes in base64url (as `npx web-push generate-vapid-keys` prints it)");
	// Signed with a key the browsers did not subscribe with, every message would be refused (403).
	if (publicKey && privateKey && p256PublicKeyOf(Buffer.from(privateKey, "base64url"))?.equals(Buffer.from(publicKey, "base64url")) !== true) {
		throw new Error("VAPID_PUBLIC_KEY is not the public key of VAPID_PRIVATE_KEY: set both from one pair");
	}
	const subject = nonEmpty(env.VAPID_SUBJECT) ?? `mailto:${fromEmail}`;
	if (!/^(mailto:[^\s@]+@[^\s@]+|https:\/\/[^\s/]+\S*)$/i.test(subject)) throw new Error(`VAPID_SUBJECT must be a mailto: or https: address push services can reach the shop at, not "${env.VAPID_SUBJECT}"`);
	return { keys: publicKey && privateKey ? { publicKey, privateKey } : null, subject, hosts: parsePushHosts(env.WEB_PUSH_HOSTS) };
}

export function createChannels(cfg: NotificationConfig, log?: (line: string) => void): Record<"email" | "sms" | "app", NotificationChannel> {
	return {
		app: cfg.fcm ? new FcmChannel(cfg.fcm) : new OutboxChannel("push", log, cfg.logWholeOutboxed),
		email: cfg.sendgrid ? new SendGridChannel({ ...cfg.sendgrid, from: cfg.fromEmail }) : new OutboxChannel("email", log, cfg.logWholeOutboxed),
		sms: cfg.twilio ? new TwilioChannel(cfg.twilio) : new OutboxChannel("sms", log, cfg.logWholeOutboxed),
	};
}
