/** Sales, top products and funnel reports from broker events. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const AnalyticsService: ServiceSchema = {
	name: "analytics",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default AnalyticsService;
