/** The order follow-ups' timers: an unpaid order is looked at every minute, whatever the recovery interval. */
import { OrderFollowUpsMixin } from "../../mixins/order-follow-ups.mixin";

afterEach(() => jest.useRealTimers());

test("an order unpaid past its 30-minute TTL is cancelled within the minute after, not up to five minutes later", async () => {
	jest.useFakeTimers();
	const expired: number[] = [];
	const host: any = {
		settings: { staleCheckoutMs: 15 * 60_000, unpaidOrderTtlMs: 30 * 60_000, checkoutRecoveryScanMs: 5000 },
		logger: { error: jest.fn() },
		recoverInterrupted: jest.fn(async () => undefined),
		recoverInterruptedCheckouts: jest.fn(async () => undefined),
		expireUnpaid: jest.fn(async (ttl: number) => void expired.push(ttl)),
	};
	(OrderFollowUpsMixin.started as any).call(host);
	try {
		jest.advanceTimersByTime(60_000);
		expect(expired).toEqual([30 * 60_000]);
		jest.advanceTimersByTime(60_000);
		expect(expired).toHaveLength(2);
		// The recovery of interrupted orders keeps its own, slower pace.
		expect(host.recoverInterrupted).not.toHaveBeenCalled();
		jest.advanceTimersByTime(3 * 60_000);
		expect(host.recoverInterrupted).toHaveBeenCalledTimes(1);
	} finally {
		(OrderFollowUpsMixin.stopped as any).call(host);
	}
});
