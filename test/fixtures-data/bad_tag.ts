@problemName BadTag
@dimensions two
@classLabel true x
@data
1:x
