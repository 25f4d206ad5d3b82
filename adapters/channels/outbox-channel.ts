/**
 * The channel when no provider is configured: the message is already stored by the service, so
 * "delivering" it marks it `outboxed` (not `sent`: nothing left the shop). An operator or a relay can
 * read outboxed messages from the store; in development they are logged at debug level.
 */
import type { DeliveryResult, NotificationChannel, OutgoingMessage } from "./notification-channel";

export class OutboxChannel implements NotificationChannel {
	readonly provider = "outbox" as const;
	constructor(
		readonly medium: "email" | "sms",
		private readonly log?: (line: string) => void,
	) {}

	async send(message: OutgoingMessage): Promise<DeliveryResult> {
		this.log?.(`Outboxed ${this.medium} ${message.id} to ${message.to}: ${message.subject ?? message.text.slice(0, 60)}`);
		return { status: "outboxed", provider: this.provider, providerId: null };
	}
}
