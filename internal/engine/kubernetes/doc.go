// Package kubernetes is rung's Kubernetes engine (DESIGN section 14).
package kubernetes
