/** Email through SendGrid's v3 mail API with the official @sendgrid/mail client. */
import type { Client } from "@sendgrid/client";
import type { MailService } from "@sendgrid/mail";
import { DeliveryError, SEND_TIMEOUT_MS, clientPerTimeout, type DeliveryResult, type NotificationChannel, type OutgoingMessage, type SendOptions } from "./notification-channel";

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
	private readonly mailWith = clientPerTimeout((timeoutMs) => this.makeMail(timeoutMs));

	constructor(private readonly opts: SendGridOptions) {
		this.mailWith(opts.timeoutMs ?? SEND_TIMEOUT_MS);
	}

	private makeMail(timeoutMs: number): MailService {
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
		return mail;
	}

	async send(message: OutgoingMessage, options: SendOptions = {}): Promise<DeliveryResult> {
		try {
			const [res] = await this.mailWith(options.timeoutMs ?? this.opts.timeoutMs ?? SEND_TIMEOUT_MS).send({
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
			throw new DeliveryError(`SendGrid ${status ?? "network"} error: ${detail}`, this.provider, status, undefined, err?.response?.headers?.["retry-after"]);
		}
	}
}
