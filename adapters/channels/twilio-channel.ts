/** SMS through Twilio's Messages API with the official twilio client. */
import type twilio from "twilio";
import type RequestClient from "twilio/lib/base/RequestClient";
import { DeliveryError, type DeliveryResult, type NotificationChannel, type OutgoingMessage } from "./notification-channel";

export interface TwilioOptions {
	accountSid: string;
	authToken: string;
	from: string;
	/** Another API origin (a local fake in tests): every *.twilio.com URL is rewritten to it. */
	apiBase?: string;
	timeoutMs?: number;
}

/**
 * Twilio's `edge`/`region` only change *.twilio.com host names; this client sends elsewhere.
 * A wrapped instance rather than a subclass, so that the SDK loads only when a channel is made.
 */
export function rebasedRequestClient(apiBase: string, opts?: RequestClient.RequestClientOptions): RequestClient {
	const TwilioRequestClient = require("twilio/lib/base/RequestClient") as typeof RequestClient;
	const client = new TwilioRequestClient(opts);
	const send = client.request.bind(client);
	const base = apiBase.replace(/\/+$/, "");
	client.request = (req) => send({ ...req, uri: req.uri.replace(/^https:\/\/[a-z0-9.-]*twilio\.com/i, base) });
	return client;
}

export class TwilioChannel implements NotificationChannel {
	readonly provider = "twilio" as const;
	readonly medium = "sms" as const;
	private readonly client: ReturnType<typeof twilio>;

	constructor(private readonly opts: TwilioOptions) {
		// Required only when TWILIO_* selects this channel: the SDK is large and slow to load.
		const createClient = require("twilio") as typeof twilio;
		const timeout = opts.timeoutMs ?? 15_000;
		this.client = createClient(opts.accountSid, opts.authToken, {
			timeout,
			...(opts.apiBase ? { httpClient: rebasedRequestClient(opts.apiBase, { timeout }) } : {}),
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
