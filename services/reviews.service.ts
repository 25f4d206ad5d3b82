/** Product reviews, moderation, votes and rating summaries. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const ReviewsService: ServiceSchema = {
	name: "reviews",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default ReviewsService;
