# The serverless backend: handlers/lambda_function.py in a container image (INT8 model baked in,
# infra/docker/lambda.Dockerfile), invoked synchronously by the routers (AwsLambdaDriver), plus
# the bucket its `inputs_s3` references point into. Not in the VPC: it reaches nothing inside
# it, and stays out of the NAT and ENI business.

resource "aws_s3_bucket" "media" {
  bucket_prefix = "${var.name}-media-"
  # Media here is transient by design (media_retention_days): destroying the stack may delete it.
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "media" {
  bucket = aws_s3_bucket.media.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "media" {
  bucket = aws_s3_bucket.media.id

  rule {
    id     = "expire-media"
    status = "Enabled"

    filter {}

    expiration {
      days = var.media_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${var.name}-infer"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Exactly the AWS calls handlers/lambda_function.py makes (tests/unit/test_infra.py derives
# them from the source): s3.get_object of an `inputs_s3` reference, in the media bucket only.
data "aws_iam_policy_document" "lambda_calls" {
  statement {
    sid       = "ReadMediaRefs"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.media.arn}/*"]
  }
}

data "aws_iam_policy_document" "lambda_logs" {
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda_calls" {
  name   = "libra-calls"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda_calls.json
}

resource "aws_iam_role_policy" "lambda_logs" {
  name   = "logs"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda_logs.json
}

resource "aws_lambda_function" "infer" {
  function_name = "${var.name}-infer"
  description   = "Libra serverless inference (INT8 ONNX, handlers.lambda_function.handler)"
  role          = aws_iam_role.lambda.arn

  package_type  = "Image"
  image_uri     = local.image_uri["lambda"]
  architectures = ["x86_64"]

  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_s
  reserved_concurrent_executions = var.lambda_reserved_concurrency

  environment {
    # Read by handlers/lambda_function.py at INIT (the image sets the same defaults).
    variables = {
      LIBRA_MODEL_PATH  = "/opt/libra/int8.onnx"
      LIBRA_ORT_THREADS = tostring(var.lambda_ort_threads)
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.lambda,
    aws_iam_role_policy.lambda_logs,
    aws_ecr_repository_policy.lambda,
  ]
}
