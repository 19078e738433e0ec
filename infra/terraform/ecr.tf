# One ECR repository per image (infra/docker/<image>.Dockerfile), keeping the last few images.
# Tags are immutable and every consumer pulls by digest (repository@sha256:...): re-pushing a tag
# cannot change what new workers boot while Lambda and the router keep the old bytes.

locals {
  images = toset(["router", "worker", "lambda"])

  image_uri = { for k, repo in aws_ecr_repository.image : k => "${repo.repository_url}@${var.image_digests[k]}" }
  registry  = split("/", aws_ecr_repository.image["worker"].repository_url)[0]
}

resource "aws_ecr_repository" "image" {
  for_each = local.images

  name                 = "${var.name}-${each.key}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  for_each = aws_ecr_repository.image

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}

# Lambda pulls the function's image with the service's own identity: the repository must let it.
data "aws_iam_policy_document" "lambda_image_pull" {
  statement {
    sid     = "LambdaPull"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "aws:sourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:lambda:${var.region}:${data.aws_caller_identity.current.account_id}:function:*"]
    }
  }
}

resource "aws_ecr_repository_policy" "lambda" {
  repository = aws_ecr_repository.image["lambda"].name
  policy     = data.aws_iam_policy_document.lambda_image_pull.json
}
