/** Email/SMS/push notifications from broker events. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const NotificationsService: ServiceSchema = {
	name: "notifications",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default NotificationsService;
