/**
 * The channel when no provider is configured: the message stored by the service is its delivery, so
 * the service stores it `outboxed` at once (not `sent`: nothing left the shop) and `send` only logs it. An operator or a relay can
 * read outboxed messages from the store, except the one-time links of verification and reset
 * messages, which the service removes from the stored copy once delivered. With `wholeMessage` (development) the log line carries the
 * whole text, so whoever tries the shop on a laptop can follow a verification or reset link; else
 * only who it went to and its subject (the text may hold one-time links).
 */
import type { DeliveryResult, NotificationChannel, OutgoingMessage } from "./notification-channel";

export class OutboxChannel implements NotificationChannel {
	readonly provider = "outbox" as const;
	readonly deliversByStoring = true;
	constructor(
		readonly medium: "email" | "sms" | "push",
		private readonly log?: (line: string) => void,
		private readonly wholeMessage = false,
	) {}

	async send(message: OutgoingMessage): Promise<DeliveryResult> {
		const head = `Outboxed ${this.medium} ${message.id} to ${message.to}`;
		this.log?.(this.wholeMessage ? `${head} (no ${this.medium} provider configured; the message as it would have gone):\n${message.subject ? `${message.subject}\n\n` : ""}${message.text}` : `${head}: ${message.subject ?? message.text.slice(0, 60)}`);
		return { status: "outboxed", provider: this.provider, providerId: null };
	}
}
