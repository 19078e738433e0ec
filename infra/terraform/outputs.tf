output "router_url" {
  description = "Where clients POST /predict (the ALB)."
  value       = "${local.router_scheme}://${aws_lb.router.dns_name}"
}

output "lambda_function_name" {
  description = "The serverless backend (LIBRA_LAMBDA_FUNCTION)."
  value       = aws_lambda_function.infer.function_name
}

output "asg_name" {
  description = "The GPU worker Auto Scaling group the controller drives (LIBRA_ASG_NAME)."
  value       = aws_autoscaling_group.workers.name
}

output "redis_endpoint" {
  description = "Shared rate store and worker registry, without its AUTH token; reachable only from inside the VPC. The full LIBRA_REDIS_URL is in the secret router_secrets[\"LIBRA_REDIS_URL\"]."
  value       = local.redis_endpoint
}

output "router_secrets" {
  description = "Secrets Manager ARNs of the settings the router reads from secrets (LIBRA_API_KEYS, LIBRA_REDIS_URL): what a libra-serve run elsewhere needs besides router_env."
  value       = local.router_secrets
}

output "public_paths" {
  description = "The only paths the public listener forwards to the router; everything else answers 404 at the ALB."
  value       = local.public_paths
}

output "alerts_topic_arn" {
  description = "SNS topic of every alarm (alert_email is subscribed: confirm the mail)."
  value       = aws_sns_topic.alerts.arn
}

output "media_bucket" {
  description = "Bucket for inputs passed to the function by S3 reference (objects expire after media_retention_days)."
  value       = aws_s3_bucket.media.bucket
}

output "ecr_repositories" {
  description = "Repository URL per image: push infra/docker/<key>.Dockerfile builds here (tags are immutable; deploy with their digests, image_digests)."
  value       = { for k, repo in aws_ecr_repository.image : k => repo.repository_url }
}

output "router_env" {
  description = "The LIBRA_* settings the router task runs with: the same variables point a libra-serve run elsewhere in the VPC at this stack."
  value       = { for k, v in local.router_env : k => tostring(v) }
}

output "log_groups" {
  description = "CloudWatch log groups of the router, the workers (one stream per instance id) and the function."
  value = {
    router = aws_cloudwatch_log_group.router.name
    worker = aws_cloudwatch_log_group.worker.name
    lambda = aws_cloudwatch_log_group.lambda.name
  }
}
