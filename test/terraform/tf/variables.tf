variable "api_url" {
  description = "Base URL of the nodebalancer API, e.g. http://127.77.0.1:8080 (no /v4)."
  type        = string
}

variable "token" {
  description = "API token (run.sh uses the server's bootstrap token)."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "The one region the server serves (its --region)."
  type        = string
  default     = "local"
}

variable "backend_web1" {
  description = "Address of the first http backend."
  type        = string
}

variable "backend_web2" {
  description = "Address of the second http backend."
  type        = string
}

variable "backend_tcp" {
  description = "Address of the backend that expects a PROXY v2 header."
  type        = string
}

# run.sh changes these two in its "change a node" step.
variable "web2_mode" {
  description = "Mode of node web-2."
  type        = string
  default     = "accept"
}

variable "web2_weight" {
  description = "Weight of node web-2."
  type        = number
  default     = 50
}

# run.sh changes these two in its "change a config and the NodeBalancer" step.
variable "http_check_interval" {
  description = "check_interval of the http config."
  type        = number
  default     = 5
}

variable "nb_tags" {
  description = "Tags of the NodeBalancer."
  type        = list(string)
  default     = ["terraform", "test"]
}

variable "tls_cert" {
  description = "PEM certificate of the https config (run.sh makes a self-signed one)."
  type        = string
}

variable "tls_key" {
  description = "PEM private key of the https config."
  type        = string
  sensitive   = true
}
