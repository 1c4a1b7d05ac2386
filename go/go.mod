module github.com/ignalina/alloy/go

go 1.26.0

require (
	github.com/apache/arrow-go/v18 v18.8.0 // indirect
	golang.org/x/sys v0.50.0
	pgregory.net/rapid v1.3.0
)
