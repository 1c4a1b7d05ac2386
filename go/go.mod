module github.com/ignalina/alloy/go

go 1.24
