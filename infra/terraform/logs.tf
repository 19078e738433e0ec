# Access and network logs, in one S3 bucket: ALB access logs (enable_alb_access_logs) and VPC
# flow logs (enable_flow_logs). S3 rather than CloudWatch Logs: both services deliver there
# directly, storage is cheap, and Athena reads them when someone needs to. Objects expire after
# access_log_retention_days.
#
# ALB access logs support only SSE-S3 buckets, hence AES256 and not a KMS key (infra/.checkov.yaml).

locals {
  logs_bucket = var.enable_flow_logs || var.enable_alb_access_logs
}

data "aws_elb_service_account" "this" {
  count = var.enable_alb_access_logs ? 1 : 0
}

resource "aws_s3_bucket" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket_prefix = "${var.name}-logs-"
  force_destroy = true # logs only: destroying the stack takes them along
}

resource "aws_s3_bucket_public_access_block" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.logs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket = aws_s3_bucket.logs[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket = aws_s3_bucket.logs[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket = aws_s3_bucket.logs[0].id

  rule {
    id     = "expire-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "logs_bucket" {
  count = local.logs_bucket ? 1 : 0

  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs[0].arn, "${aws_s3_bucket.logs[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # ALB access logs: the region's ELB account (regions before August 2022) or the log delivery
  # service principal (newer regions) writes under alb/.
  dynamic "statement" {
    for_each = var.enable_alb_access_logs ? [1] : []

    content {
      sid       = "AlbAccessLogs"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs[0].arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

      principals {
        type        = "AWS"
        identifiers = [data.aws_elb_service_account.this[0].arn]
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_alb_access_logs ? [1] : []

    content {
      sid       = "AlbAccessLogsDelivery"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs[0].arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

      principals {
        type        = "Service"
        identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
      }
    }
  }

  # VPC flow logs (the log delivery service, on behalf of this account only).
  dynamic "statement" {
    for_each = var.enable_flow_logs ? [1] : []

    content {
      sid       = "FlowLogsWrite"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs[0].arn}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

      principals {
        type        = "Service"
        identifiers = ["delivery.logs.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_flow_logs ? [1] : []

    content {
      sid       = "FlowLogsAclCheck"
      actions   = ["s3:GetBucketAcl"]
      resources = [aws_s3_bucket.logs[0].arn]

      principals {
        type        = "Service"
        identifiers = ["delivery.logs.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  count = local.logs_bucket ? 1 : 0

  bucket = aws_s3_bucket.logs[0].id
  policy = data.aws_iam_policy_document.logs_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

resource "aws_flow_log" "vpc" {
  count = var.enable_flow_logs ? 1 : 0

  vpc_id                   = local.vpc_id
  traffic_type             = "ALL"
  log_destination_type     = "s3"
  log_destination          = aws_s3_bucket.logs[0].arn # AWSLogs/<account>/vpcflowlogs/...; ALB logs are under alb/
  max_aggregation_interval = 600

  depends_on = [aws_s3_bucket_policy.logs]
}
