/** Email through SendGrid's v3 mail API with the official @sendgrid/mail client. */
import type { Client } from "@sendgrid/client";
import type { MailService } from "@sendgrid/mail";
import { retryAfterMs } from "../../lib/retry-backoff";
import { DeliveryError, type DeliveryResult, type NotificationChannel, type OutgoingMessage, type SendOptions } from "./notification-channel";

export interface SendGridOptions {
	apiKey: string;
	from: string;
	/** Another API host (a local fake in tests); default https://api.sendgrid.com. */
	baseUrl?: string;
	timeoutMs?: number;
}

export class SendGridChannel implements NotificationChannel {
	readonly provider = "sendgrid" as const;
	readonly medium = "email" as const;
	/** A client per timeout (the SDK sets it per client, not per request): the usual one, and the longer one of a retry after no answer. */
	private readonly mails = new Map<number, MailService>();

	constructor(private readonly opts: SendGridOptions) {
		this.mailWith(opts.timeoutMs ?? 15_000);
	}

	private mailWith(timeoutMs: number): MailService {
		const made = this.mails.get(timeoutMs);
		if (made) return made;
		// The SDK is required only when SENDGRID_API_KEY selects this channel (it costs start-up time).
		const { Client: SendGridClient } = require("@sendgrid/client") as { Client: typeof Client };
		const { MailService: SendGridMail } = require("@sendgrid/mail") as { MailService: typeof MailService };
		// Own instances, not the package singletons, so two configurations never share a key.
		const client = new SendGridClient();
		client.setApiKey(this.opts.apiKey);
		if (this.opts.baseUrl) client.setDefaultRequest("baseUrl", this.opts.baseUrl);
		const mail = new SendGridMail();
		mail.setClient(client);
		mail.setTimeout(timeoutMs);
		this.mails.set(timeoutMs, mail);
		return mail;
	}

	async send(message: OutgoingMessage, options: SendOptions = {}): Promise<DeliveryResult> {
		try {
			const [res] = await this.mailWith(options.timeoutMs ?? this.opts.timeoutMs ?? 15_000).send({
				to: message.to,
				from: this.opts.from,
				subject: message.subject ?? "",
				text: message.text,
				html: message.html ?? message.text,
				customArgs: { notificationId: message.id },
			});
			const id = res.headers?.["x-message-id"];
			return { status: "sent", provider: this.provider, providerId: typeof id === "string" ? id : null };
		} catch (err: any) {
			const status = typeof err?.code === "number" ? err.code : err?.response?.statusCode;
			const detail = err?.response?.body?.errors?.[0]?.message ?? err?.message ?? "unknown error";
			const retryAfter = retryAfterMs(err?.response?.headers?.["retry-after"]) ?? undefined;
			throw new DeliveryError(`SendGrid ${status ?? "network"} error: ${detail}`, this.provider, status, undefined, retryAfter);
		}
	}
}
