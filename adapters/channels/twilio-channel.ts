/** SMS through Twilio's Messages API with the official twilio client. */
import twilio from "twilio";
import RequestClient from "twilio/lib/base/RequestClient";
import { DeliveryError, type DeliveryResult, type NotificationChannel, type OutgoingMessage } from "./notification-channel";

export interface TwilioOptions {
	accountSid: string;
	authToken: string;
	from: string;
	/** Another API origin (a local fake in tests): every *.twilio.com URL is rewritten to it. */
	apiBase?: string;
	timeoutMs?: number;
}

/** Twilio's `edge`/`region` only change *.twilio.com host names; this client sends elsewhere. */
export class RebasedRequestClient extends RequestClient {
	constructor(
		private readonly apiBase: string,
		opts?: RequestClient.RequestClientOptions,
	) {
		super(opts);
	}

	request<TData>(opts: RequestClient.RequestOptions<TData>) {
		const base = this.apiBase.replace(/\/+$/, "");
		return super.request({ ...opts, uri: opts.uri.replace(/^https:\/\/[a-z0-9.-]*twilio\.com/i, base) });
	}
}

export class TwilioChannel implements NotificationChannel {
	readonly provider = "twilio" as const;
	readonly medium = "sms" as const;
	private readonly client: ReturnType<typeof twilio>;

	constructor(private readonly opts: TwilioOptions) {
		const timeout = opts.timeoutMs ?? 15_000;
		this.client = twilio(opts.accountSid, opts.authToken, {
			timeout,
			...(opts.apiBase ? { httpClient: new RebasedRequestClient(opts.apiBase, { timeout }) } : {}),
		});
	}

	async send(message: OutgoingMessage): Promise<DeliveryResult> {
		try {
			const sms = await this.client.messages.create({ to: message.to, from: this.opts.from, body: message.text });
			return { status: "sent", provider: this.provider, providerId: sms.sid ?? null };
		} catch (err: any) {
			const status = typeof err?.status === "number" ? err.status : undefined;
			throw new DeliveryError(`Twilio ${status ?? "network"} error: ${err?.message ?? "unknown error"}`, this.provider, status);
		}
	}
}
